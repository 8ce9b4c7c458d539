"""%%agent through a real kernel talking HTTP to the loopback model server."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_agentmem.testing import FakeModelServer

from .kernel import Execution, Kernel

pytestmark = pytest.mark.kernel

KEY = "sk-test-secret-key-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelServer]:
    srv = FakeModelServer(default=None).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kernel(server: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    tmp = tmp_path_factory.mktemp("kernel")
    k = Kernel(tmp, {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY})
    k.ok(
        textwrap.dedent(
            """
            %load_ext jupyter_agentmem
            from jupyter_agentmem.notebook.extension import get_context
            from jupyter_agentmem.notebook.namespace import session_id as sid_of
            ctx = get_context()
            ctx.config.max_retries = 0
            ctx.config.timeout = 3.0
            ctx.config.summarizer = "extractive"
            """
        )
    )
    yield k
    k.shutdown()


@pytest.fixture(autouse=True)
def empty_queue(server: FakeModelServer) -> Iterator[None]:
    yield
    assert server.pending == 0, "a scripted reply was not consumed"


def turns(kernel: Kernel, session: str) -> int:
    return int(kernel.value(f"ctx.manager.get_or_create(sid_of({session!r})).messages_total"))


def test_answer_streams_and_becomes_the_cell_result(
    kernel: Kernel, server: FakeModelServer
) -> None:
    text = "Streaming works. " * 30
    server.enqueue_text(text, chunk_size=8, delay=0.03)  # ~64 chunks, ~2 s
    run = kernel.ok("%%agent -s stream\nSay something long")
    updates = run.of_type("update_display_data")
    first_text = next(t for t, m in updates if "Streaming" in m["content"]["data"]["text/markdown"])
    finished = run.of_type("execute_result")[0][0]
    assert finished - first_text > 1.0, "the first text should be visible long before the end"
    assert run.result is not None
    assert run.result["text/plain"] == text
    assert run.result["text/markdown"].startswith(text + "\n\n<sub>")
    assert "session `stream`" in run.result["text/markdown"][len(text) :]  # the footer
    # the live display ends as it began (empty: stable for nbval)
    displays = run.of_type("display_data")
    assert updates[-1][1]["content"]["data"] == displays[0][1]["content"]["data"]
    assert kernel.value("_ == " + json.dumps(text))
    assert turns(kernel, "stream") == 2


def test_long_answer_stays_under_iopub_rate_limits(kernel: Kernel, server: FakeModelServer) -> None:
    text = ("x" * 79 + "\n") * 2560  # 200 KB
    server.enqueue_text(text, chunk_size=40, delay=0.0005)
    run = kernel.ok("%%agent -s big --no-tools\nA 200 KB answer please")
    updates = run.of_type("update_display_data")
    assert updates, "expected live updates"
    span = max(updates[-1][0] - updates[0][0], 1.0)
    sent = sum(len(json.dumps(m["content"]["data"])) for _, m in updates)
    assert len(updates) / span <= 25, f"{len(updates)} updates in {span:.1f} s"
    assert sent / span <= 500_000, f"{sent / span:,.0f} B/s re-sent"
    assert run.result is not None and run.result["text/plain"] == text


def test_tool_loop_runs_python_and_truncates_results(
    kernel: Kernel, server: FakeModelServer
) -> None:
    kernel.ok(
        textwrap.dedent(
            """
            from jupyter_agentmem import agent_tool
            calls = []

            @agent_tool
            def big_table(rows: int) -> dict:
                "Return a table with many rows."
                calls.append(rows)
                return {"rows": [{"id": i, "name": "row" * 5} for i in range(rows)]}

            @agent_tool
            def broken(x: int) -> int:
                "Always fails."
                raise ValueError("no luck")
            """
        )
    )
    server.enqueue_tool_calls(
        [
            {"name": "big_table", "arguments": {"rows": 5000}},
            {"name": "broken", "arguments": {"x": 1}},
        ]
    )
    server.enqueue_text("The table has 5000 rows.")
    run = kernel.ok("%%agent -s tools\nHow many rows does big_table have?")
    assert kernel.value("calls") == [5000]
    assert run.result is not None and run.result["text/plain"] == "The table has 5000 rows."
    second_request = server.requests[-1]["messages"]
    tool_messages = [m for m in second_request if m["role"] == "tool"]
    assert len(tool_messages) == 2
    table = json.loads(tool_messages[0]["content"])  # still valid JSON after truncation
    assert len(tool_messages[0]["content"]) <= 2000 and len(table["rows"]) < 5000
    assert tool_messages[1]["content"] == "Error: ValueError: no luck"
    stored = kernel.value(
        "[m['role'] for m in ctx.manager.get_or_create(sid_of('tools')).recent_messages]"
    )
    assert stored == ["user", "assistant", "tool", "tool", "assistant"]
    summary = run.of_type("display_data")[-1][1]["content"]["data"]["text/markdown"]
    assert "big_table" in summary and "broken" in summary and "session" not in summary
    assert kernel.value("ctx.manager.stats().truncated_chars_saved") > 100_000


def test_interrupt_keeps_the_partial_answer(kernel: Kernel, server: FakeModelServer) -> None:
    server.enqueue_text("partial " * 200, chunk_size=8, delay=0.05)
    seen: list[float] = []

    def on_message(elapsed: float, msg: dict[str, object]) -> None:
        content = msg.get("content")
        if (
            msg["msg_type"] == "update_display_data"
            and not seen
            and "partial" in json.dumps(content)
        ):
            seen.append(elapsed)
            kernel.interrupt()

    run = kernel.execute("%%agent -s stop\nTalk slowly", timeout=30, on_message=on_message)
    assert seen, "no streamed update arrived"
    assert run.status == "error" and run.error is not None, [
        (round(t, 2), m["msg_type"], str(m["content"])[:200]) for t, m in run.messages
    ]
    assert run.error["ename"] == "KeyboardInterrupt"
    assert run.reply["content"]["status"] == "error"
    last = run.of_type("update_display_data")[-1][1]["content"]["data"]["text/markdown"]
    assert "partial" in last and "interrupted" in last
    stored = kernel.value("ctx.manager.get_or_create(sid_of('stop')).recent_messages")
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["content"].startswith("partial")
    assert stored[1]["content"].endswith("[interrupted by the user]")
    assert len(stored[1]["content"]) < 1600 + 40  # stopped early, not the whole answer


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (lambda s: s.enqueue_error(429, "slow down"), "rate"),
        (lambda s: s.enqueue_error(401, "bad key"), "key"),
        (lambda s: s.enqueue_error(404, "model not found"), "model"),
        (lambda s: s.enqueue_error(500, "boom"), "server"),
        (lambda s: s.enqueue_drop(after_chunks=2, text="abcdefgh" * 10), ""),
        (lambda s: s.enqueue_malformed(), "malformed"),
        (lambda s: s.enqueue_hang(6.0), "timed out"),
    ],
    ids=["429", "401", "404", "500", "dropped", "malformed", "timeout"],
)
def test_errors_are_one_clear_line_and_store_nothing(
    kernel: Kernel, server: FakeModelServer, script: object, expected: str
) -> None:
    before = turns(kernel, "errors")
    script(server)  # type: ignore[operator]
    run = kernel.execute("%%agent -s errors\nHello?", timeout=30)
    assert run.status == "error" and run.error is not None
    assert run.error["ename"] == "ModelError"
    assert len(run.error["traceback"]) == 1, run.error["traceback"]
    assert expected.lower() in run.error["evalue"].lower()
    assert KEY not in json.dumps([m for _, m in run.messages], default=str)
    assert turns(kernel, "errors") == before


def test_unreachable_server_and_missing_key(kernel: Kernel) -> None:
    kernel.ok("ctx.config.base_url = 'http://127.0.0.1:9/v1'")
    try:
        run = kernel.execute("%%agent -s unreachable\nhi", timeout=30)
        assert run.error is not None and run.error["ename"] == "ModelError"
        assert "127.0.0.1:9" in run.error["evalue"]
    finally:
        kernel.ok("ctx.config.base_url = ''")
    kernel.ok(
        "import os; _saved = {k: os.environ.pop(k) for k in ('OPENAI_API_KEY', 'OPENAI_BASE_URL')}"
    )
    try:
        run = kernel.execute("%%agent -s nokey -m gpt-4o-mini\nhi", timeout=30)
        assert run.error is not None and run.error["ename"] == "ModelError"
        assert "OPENAI_API_KEY" in run.error["evalue"]
        assert len(run.error["traceback"]) == 1
    finally:
        kernel.ok("os.environ.update(_saved)")
    assert turns(kernel, "unreachable") == 0 and turns(kernel, "nokey") == 0


def test_braces_and_interpolation(kernel: Kernel, server: FakeModelServer) -> None:
    kernel.ok("city = 'Lyon {not expanded}'")
    server.enqueue_text("ok")
    kernel.ok('%%agent -s braces\nJSON {"a": 1} and {} and {{x}} from {city}')
    sent = server.requests[-1]["messages"][-1]["content"]
    assert sent == 'JSON {"a": 1} and {} and {x} from Lyon {not expanded}'
    run = kernel.execute("%%agent -s braces\nWhat about {nowhere}?")
    assert run.error is not None and "{nowhere}" in run.error["evalue"]
    assert len(run.error["traceback"]) == 1


def test_bad_flag_is_a_usage_error(kernel: Kernel) -> None:
    run = kernel.execute("%%agent --bogus\nhi")
    assert run.status == "error"
    stderr = "".join(m["content"]["text"] for _, m in run.of_type("stream"))
    assert "UsageError" in stderr and "--bogus" in stderr
    assert len(stderr.strip().splitlines()) <= 3


def test_out_variable_and_code_format(kernel: Kernel, server: FakeModelServer) -> None:
    server.enqueue_text("Here:\n```python\nprint(41 + 1)\n```\n")
    run = kernel.ok("%%agent -s code -f code -o reply\nWrite code")
    assert kernel.value("reply.startswith('Here:')")
    payload = run.reply["content"].get("payload", [])
    assert any(p.get("text") == "print(41 + 1)" for p in payload)


def test_context_sends_summary_plus_recent_turns(kernel: Kernel, server: FakeModelServer) -> None:
    for i in range(8):
        server.enqueue_text(f"answer {i}")
        kernel.ok(f"%%agent -s long\nquestion {i}")
    sent = server.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert any(m["content"].startswith("Summary of earlier conversation") for m in sent[1:2])
    assert len(sent) <= 2 + 10 + 1
    assert turns(kernel, "long") == 16


def test_reload_leaves_one_of_everything(kernel: Kernel, tmp_path: Path) -> None:
    probe = textwrap.dedent(
        """
        import threading
        _cb = {k: len(v) for k, v in get_ipython().events.callbacks.items()}
        _threads = sorted(t.name for t in threading.enumerate())
        print(json.dumps([_cb, _threads]))
        """
    )
    kernel.ok("import json")
    before = json.loads(kernel.ok(probe).stdout)
    for _ in range(3):
        kernel.ok("%reload_ext jupyter_agentmem")
    kernel.ok("%unload_ext jupyter_agentmem")
    kernel.ok("%load_ext jupyter_agentmem")
    after = json.loads(kernel.ok(probe).stdout)
    assert after[0] == before[0]
    leftovers = [n for n in after[1] if "agentmem" in n.lower() or "FakeModel" in n]
    assert leftovers == [n for n in before[1] if "agentmem" in n.lower() or "FakeModel" in n]
    kernel.ok(
        "ctx = get_context(); ctx.config.max_retries = 0; ctx.config.timeout = 3.0; "
        "ctx.config.summarizer = 'extractive'"
    )


def test_llm_summarizer_compacts_in_the_background(kernel: Kernel, server: FakeModelServer) -> None:
    kernel.ok("ctx.config.summarizer = 'llm'; ctx.config.max_recent = 4")
    try:
        kernel.ok("ctx.manager.delete(sid_of('llm'))")
        server.enqueue_text("first answer")
        kernel.ok("%%agent -s llm\nfirst")
        server.enqueue_text("second answer")
        server.enqueue_text("SUMMARY: the user asked twice.")  # taken by the compaction
        kernel.ok("%%agent -s llm\nsecond " + "x" * 40_000)
        kernel.ok(
            "import time\n"
            "for _ in range(100):\n"
            "    if ctx.manager.get_or_create(sid_of('llm')).compactions: break\n"
            "    time.sleep(0.05)"
        )
        assert kernel.value("ctx.manager.get_or_create(sid_of('llm')).summary") == (
            "SUMMARY: the user asked twice."
        )
        summary_request = server.requests[-1]["messages"]
        assert "Current summary" in summary_request[-1]["content"]
        assert len(summary_request[-1]["content"]) < 30_000  # the request itself is bounded
    finally:
        kernel.ok("ctx.config.summarizer = 'extractive'; ctx.config.max_recent = 10")


def test_a_conversation_survives_a_kernel_restart(tmp_path: Path) -> None:
    """Kernel shutdown flushes live sessions to the default SQLite store."""
    server = FakeModelServer(default=None).start()
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY}
    env["JPY_SESSION_NAME"] = str(tmp_path / "keep.ipynb")  # the same notebook, reopened
    try:
        first = Kernel(tmp_path, env)
        server.enqueue_text("remembered answer")
        first.ok("%load_ext jupyter_agentmem\n")
        first.ok("%%agent -s keep\nremember this")
        first.shutdown()  # a clean shutdown runs the extension's exit hook
        second = Kernel(tmp_path, env)
        try:
            second.ok(
                "%load_ext jupyter_agentmem\nfrom jupyter_agentmem import get_manager\n"
                "from jupyter_agentmem.notebook.namespace import session_id"
            )
            stored = second.value("get_manager().get_or_create(session_id('keep')).recent_messages")
            assert stored == [
                {"role": "user", "content": "remember this"},
                {"role": "assistant", "content": "remembered answer"},
            ]
            db = tmp_path / "jupyter-data" / "agentmem" / "sessions.sqlite3"
            assert db.exists()
            assert KEY.encode() not in db.read_bytes()
        finally:
            second.shutdown()
    finally:
        server.stop()


def test_run_time_settings_survive_reload(kernel: Kernel) -> None:
    kernel.ok("%agent_memory config max_tool_rounds=3 tool_max_chars=900")
    kernel.ok("%reload_ext jupyter_agentmem")
    kernel.ok("ctx = get_context()")
    assert kernel.value("[ctx.config.max_tool_rounds, ctx.config.tool_max_chars]") == [3, 900]
    kernel.ok("%agent_memory config max_tool_rounds=8 tool_max_chars=2000")


def final_outputs(run: Execution) -> list[tuple[str, dict[str, str]]]:
    """The cell's outputs as a front end shows them once the cell is done: display updates
    applied in place, in order; (output type, data) of each, empty displays left out.
    Also checks nbval's view: each display's first version equals its last."""
    outputs: list[list[Any]] = []  # [type, data, display_id, first data]
    for _, msg in run.messages:
        kind, content = msg["msg_type"], msg["content"]
        display_id = content.get("transient", {}).get("display_id")
        if kind in ("display_data", "execute_result"):
            outputs.append([kind, content["data"], display_id, content["data"]])
        elif kind == "update_display_data":
            for out in outputs:
                if out[2] == display_id:
                    out[1] = content["data"]
    for kind, data, _, first in outputs:
        assert data == first, f"nbval would compare a stale first version of {kind}"
    return [(k, d) for k, d, _, _ in outputs if any(v.strip() for v in d.values())]


def test_finished_cell_reads_notice_tools_answer_footer(
    kernel: Kernel, server: FakeModelServer
) -> None:
    kernel.ok(
        "from jupyter_agentmem import agent_tool\n"
        "@agent_tool\n"
        "def forty_two() -> int:\n"
        "    'The answer.'\n"
        "    return 42"
    )
    server.enqueue_tool_calls([{"name": "forty_two", "arguments": {}}])
    server.enqueue_text("It is **42**.", chunk_size=3, delay=0.02)
    run = kernel.ok("%%agent -s layout\nWhat is the answer?")
    shown = final_outputs(run)
    assert [kind for kind, _ in shown] == ["display_data", "execute_result"], shown
    tools, result = shown[0][1]["text/markdown"], shown[1][1]["text/markdown"]
    assert "forty_two" in tools and "It is" not in tools and "session" not in tools
    assert result.startswith("It is **42**.")
    assert result.index("It is **42**.") < result.index("session `layout`")  # footer below
    assert "tokens" in result.split("It is **42**.")[1] and " s" in result
    assert not any("*" + m + "*" in json.dumps(shown) for m in ("session layout",))


def test_tb_after_a_one_line_error_shows_the_full_traceback(kernel: Kernel) -> None:
    run = kernel.execute("%%agent -s tb\nWhere is {nowhere_tb}?")
    assert run.error is not None and len(run.error["traceback"]) == 1
    shown = kernel.execute("%tb")
    lines = [*(shown.error or {}).get("traceback", []), shown.stdout]
    text = "\n".join(lines)
    assert "interpolate" in text and "nowhere_tb" in text, text  # the frame that raised
