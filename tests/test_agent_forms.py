"""``%agent`` (one line) next to ``%%agent``, through a real InteractiveShell and the real
``openai`` SDK talking HTTP to the loopback model server; and what unload leaves behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook import extension
from jupyter_agentmem.notebook.render import tool_line
from jupyter_agentmem.testing import FakeModelServer

# Characters DejaVu Sans (Debian's default font) has: no emoji, which Chromium shows as boxes.
PLAIN_GLYPHS = set(map(chr, range(0x20, 0x7F))) | set("\n·→…✗▌")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelServer]:
    srv = FakeModelServer(default=None).start()
    yield srv
    srv.stop()


@pytest.fixture
def shell(server: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123")
    extension.unload()
    sh = InteractiveShell.instance()
    config = AgentMem(store_url="memory://", base_url=server.base_url, max_retries=0)
    config.memory_guard = False
    extension.load(sh, config)
    yield sh
    extension.unload()
    assert server.pending == 0, "a scripted reply was not consumed"


def test_line_form_sends_the_question_verbatim_with_the_same_options(
    shell: InteractiveShell, server: FakeModelServer
) -> None:
    server.enqueue_text("Four.")
    question = 'What\'s  2+2? Say "four" # not a comment'
    with capture_output():
        answer = shell.run_line_magic("agent", f'-s analysis --system "Be terse." -o r {question}')
    assert answer == "Four." and shell.user_ns["r"] == "Four."
    sent = server.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "Be terse."}
    assert sent[-1] == {"role": "user", "content": question}
    from jupyter_agentmem.notebook.namespace import session_id

    state = extension.get_manager().get(session_id("analysis"))  # this notebook's "analysis"
    assert state is not None and state.recent_messages[0]["content"] == question


def test_line_form_interpolates_our_way_only(
    shell: InteractiveShell, server: FakeModelServer
) -> None:
    """``{name}`` is ours (README rules); IPython's own ``$name`` expansion stays off."""
    shell.user_ns["city"] = "Lyon"
    server.enqueue_text("ok")
    with capture_output():
        shell.run_line_magic("agent", "-s trip A trip to {city} costs $city?")
    assert server.requests[-1]["messages"][-1]["content"] == "A trip to Lyon costs $city?"


def test_line_form_without_options_and_with_a_dash_question(
    shell: InteractiveShell, server: FakeModelServer
) -> None:
    server.enqueue_text("ok")
    server.enqueue_text("ok")
    with capture_output():
        shell.run_line_magic("agent", "  hello there  ")
        shell.run_line_magic("agent", "-s x -- -5 degrees: cold?")
    assert [r["messages"][-1]["content"] for r in server.requests[-2:]] == [
        "hello there",
        "-5 degrees: cold?",
    ]


@pytest.mark.parametrize(
    ("magic", "line", "cell", "expected"),
    [
        ("line", "-s x", None, "write your question after the options"),
        ("line", "--bogus hi", None, "unrecognized arguments: --bogus"),
        ("cell", "-s x stray words", "hi", "unrecognized arguments: stray words"),
        ("cell", "-s x", "  \n", "the cell is empty"),
    ],
)
def test_bad_use_is_a_one_line_usage_error(
    shell: InteractiveShell, magic: str, line: str, cell: str | None, expected: str
) -> None:
    with pytest.raises(UsageError) as info:
        if magic == "line":
            shell.run_line_magic("agent", line)
        else:
            shell.run_cell_magic("agent", line, cell or "")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_both_helps_show_their_own_usage_and_the_same_options(shell: InteractiveShell) -> None:
    line_doc = shell.find_line_magic("agent").__doc__
    cell_doc = shell.find_cell_magic("agent").__doc__
    assert line_doc is not None and cell_doc is not None
    assert line_doc.lstrip(": \n").startswith("%agent [-s SESSION]")
    assert cell_doc.lstrip(": \n").startswith("%%agent [-s SESSION]")
    assert "question" in line_doc and "question" not in cell_doc.split("options:")[0]
    options = [o for o in ("--session", "--system", "--no-stream", "--format", "--tools", "--out")]
    for option in options:
        assert option in line_doc and option in cell_doc
    with capture_output() as cap:  # IPython's own `%agent?` / `%%agent?`
        shell.run_cell("%agent?")
        shell.run_cell("%%agent?")
    assert "not found" not in cap.stdout


def test_code_format_without_a_code_block_inserts_nothing(
    shell: InteractiveShell, server: FakeModelServer
) -> None:
    server.enqueue_text("Just prose, no code here.")
    shell.rl_next_input = None
    with capture_output() as cap:
        shell.run_cell_magic("agent", "-s code -f code", "Write code")
    assert shell.rl_next_input is None
    said = [o.data["text/plain"] for o in cap.outputs if "no code block" in o.data["text/plain"]]
    assert len(said) == 1 and "\n" not in said[0]
    server.enqueue_text("Here:\n```python\nprint(1)\n```\nand\n```\nx = 2\n```")
    with capture_output():
        shell.run_cell_magic("agent", "-s code -f code", "Write code")
    assert shell.rl_next_input == "print(1)\n\nx = 2"


def test_tool_line_uses_glyphs_every_default_font_has() -> None:
    from jupyter_agentmem.agent.chat import ToolResult
    from jupyter_agentmem.model.adapter import ToolCall

    call = ToolCall("c1", "lookup", '{"q": 1}')
    for result in (ToolResult(call, "42", None, 0.1, 0), ToolResult(call, "", "E: no", 0.1, 0)):
        line = tool_line(result)
        assert set(line) <= PLAIN_GLYPHS, sorted(set(line) - PLAIN_GLYPHS)
        assert "lookup" in line


def test_after_unload_both_magics_say_not_loaded_and_nothing_survives(
    shell: InteractiveShell,
) -> None:
    from jupyter_agentmem import agent_tool
    from jupyter_agentmem.model.tools import default_registry
    from jupyter_agentmem.watch import ticker

    @agent_tool
    def lookup(q: int) -> int:
        "Look a number up."
        return q

    with capture_output():
        shell.run_line_magic("agent_memory", "watch on")
        shell.run_cell("x = 1")
    assert default_registry.names() == ["lookup"] and ticker.history()
    extension.unload()  # what %unload_ext runs
    messages = []
    for run in (
        lambda: shell.run_cell_magic("agent", "-s a", "hello"),
        lambda: shell.run_line_magic("agent", "hello"),
        lambda: shell.run_line_magic("agent_memory", "stats"),
    ):
        with pytest.raises(UsageError) as info:
            run()
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages
    assert "not loaded: run %load_ext jupyter_agentmem" in messages[0]
    extension.load(shell, AgentMem(store_url="memory://", memory_guard=False))
    assert default_registry.names() == [] and ticker.history() == []


def test_unknown_name_inside_json_is_sent_as_written_with_one_notice(
    shell: InteractiveShell, server: FakeModelServer
) -> None:
    """``{"greeting": "{name}"}`` with no ``name`` variable: sent byte for byte, said once."""
    server.enqueue_text("Fine.")
    cell = 'Fill this template: {"greeting": "{name}", "n": [{"a": {"b": 1}}]}'
    with capture_output() as out:
        shell.run_cell_magic("agent", "", cell)
    assert server.requests[-1]["messages"][-1] == {"role": "user", "content": cell}
    shown = "\n".join(str(o.data.get("text/markdown", "")) for o in out.outputs)
    assert "not notebook variables, sent as written: {name}" in shown
