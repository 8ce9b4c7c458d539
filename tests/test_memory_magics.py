"""``%agent_memory`` through a real InteractiveShell (and once through a real kernel)."""

from __future__ import annotations

import re
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook import extension
from jupyter_agentmem.notebook.memory_commands import set_config
from jupyter_agentmem.notebook.memory_magics import SUBCOMMANDS
from jupyter_agentmem.watch import ticker as watch

MiB = 2**20


# Threads alive before the fixture loaded the extension: other tests' managers may still be
# winding down; what load/unload must not leave behind is judged against this set.
_THREADS_BEFORE: set[threading.Thread] = set()


def leftover_threads() -> list[threading.Thread]:
    alive = set(threading.enumerate()) - _THREADS_BEFORE
    return [t for t in alive if t.name.startswith("agentmem-")]


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    extension.unload()
    _THREADS_BEFORE.clear()
    _THREADS_BEFORE.update(threading.enumerate())
    sh = InteractiveShell.instance()
    extension.load(sh, AgentMem(store_url="memory://"))
    yield sh
    extension.unload()
    assert not leftover_threads()


@pytest.fixture
def ctx(shell: InteractiveShell) -> extension.KernelContext:
    context = extension.get_context()
    for i in range(5):
        context.manager.get_or_create(f"s{i}").add_message({"role": "user", "content": f"q{i}"})
    return context


def run(shell: InteractiveShell, line: str) -> tuple[str, str]:
    """(text, html) that ``%agent_memory line`` displayed."""
    with capture_output() as cap:
        shell.run_line_magic("agent_memory", line)
    text = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
    return text, "".join(o.data.get("text/html", "") for o in cap.outputs)


def usage_error(shell: InteractiveShell, line: str) -> str:
    with pytest.raises(UsageError) as info:
        run(shell, line)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_generated_help_lists_every_subcommand(shell: InteractiveShell) -> None:
    doc = shell.find_line_magic("agent_memory").__doc__
    assert "%agent_memory [--interval INTERVAL]" in doc
    for name in SUBCOMMANDS:
        assert name in doc


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--bogus", "unrecognized arguments: --bogus"),
        ("bogus", "invalid choice: 'bogus'"),
        ("stats -x", "unrecognized arguments: -x"),
        ("--interval x", "invalid float value"),
        ("--interval 0", "--interval must be >= 0.05"),
        ("sessions -n many", "invalid int value"),
        ("show", "the following arguments are required: session"),
        ("watch maybe", "invalid choice: 'maybe'"),
        ("evict", "give a SESSION or --idle SECONDS"),
        ("evict s1 --idle 3", "give a SESSION or --idle SECONDS"),
        ("evict nope", "'nope' is not in memory"),
        ("delete nope", "no session 'nope'"),
        ("show nope", "no session 'nope'"),
        ("compact nope", "no session 'nope'"),
        ("compact s1 --all", "not both"),
        ("stats -o 1bad", "not a valid variable name"),
        ("limits --max-memory lots", "cannot read 'lots' as a memory size"),
        ("limits --max-sessions 0", "max_sessions must be at least 1"),
        ("limits --max-memory 1KB", "at least 64KiB"),
        ("config nope=1", "unknown setting 'nope'; valid keys: api_key_env, base_url"),
        ("config max_recent", "expected key=value"),
        ("config max_recent=x", "config max_recent='x'"),
        ("dashboard --interval 0.01", "--interval must be >= 0.05"),
        ("limits --max-recent 0", "max_recent must be at least 1"),
        ("config max_recent=0", "max_recent must be at least 1"),
        ("config warning_pct=95", "need 0 < warning_pct < critical_pct"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    ctx: Any, shell: InteractiveShell, line: str, expected: str
) -> None:
    assert expected in usage_error(shell, line)


def test_stats_table_and_output_variable(ctx: Any, shell: InteractiveShell) -> None:
    text, page = run(shell, "stats -o s")
    data = shell.user_ns["s"]
    assert data["sessions"]["sessions_in_memory"] == 5
    assert data["memory"]["rss_bytes"] > 0 and data["memory"]["limit_source"]
    assert re.search(r"sessions\.sessions_in_memory +5\n", text) and "<table" in page
    # load() starts the guard (memory_guard=True by default), every guard_interval = 2 s.
    assert re.search(r"guard +memory guard: on, every 2 s\n", text), text
    assert "watch" in text


def test_stats_says_when_the_guard_is_off() -> None:
    extension.unload()
    shell = InteractiveShell.instance()
    extension.load(shell, AgentMem(store_url="memory://", memory_guard=False))
    try:
        text, _ = run(shell, "stats")
    finally:
        extension.unload()
    assert re.search(r"guard +memory guard: not running ", text), text


def test_sessions_lists_a_bounded_page(ctx: Any, shell: InteractiveShell) -> None:
    ctx.manager.evict("s0")
    text, _ = run(shell, "sessions -n 3")
    assert text.startswith("3 of 5 sessions")
    assert "s4" in text and "s0" not in text
    text, _ = run(shell, "sessions")
    assert "s0       no" in text  # stored, listed after the live ones


def test_show_folds_tool_results_and_escapes(ctx: Any, shell: InteractiveShell) -> None:
    state = ctx.manager.get_or_create("<b>x</b>")
    state.add_messages(
        [
            {"role": "user", "content": "what is <2+2>?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "calc", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "name": "calc", "content": "4" * 5000},
        ]
    )
    text, page = run(shell, "show <b>x</b>")
    assert "session '<b>x</b>' (in memory): 1 turn(s), 3 messages" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page.replace("<b>session", "")
    assert "<details><summary><b>tool result</b> calc (5,000 chars)</summary>" in page
    assert "what is &lt;2+2&gt;?" in page and "→ calls <code>calc</code>" in page
    assert "1,000 more chars" in page  # long contents are capped in the notebook


def test_show_reads_an_evicted_session_without_restoring_it(
    ctx: Any, shell: InteractiveShell
) -> None:
    ctx.manager.evict("s2")
    text, _ = run(shell, "show s2")
    assert "in the store (not restored)" in text and "[user] q2" in text
    assert "s2" not in ctx.manager.live_ids() and ctx.manager.stats().restores == 0


def test_compact_one_and_all(ctx: Any, shell: InteractiveShell) -> None:
    state = ctx.manager.get_or_create("long")
    state.add_messages([{"role": "user", "content": f"turn {i}"} for i in range(8)])
    text, _ = run(shell, "compact long")
    assert text.strip() == "compacted 'long'" and state.compactions == 1 and state.summary
    text, _ = run(shell, "compact s1")
    assert "nothing to fold yet" in text
    text, _ = run(shell, "compact --all")
    assert text.startswith("compacted 0 session(s)")


def test_evict_and_delete(ctx: Any, shell: InteractiveShell) -> None:
    text, _ = run(shell, "evict s1")
    assert "evicted 's1' to the store" in text and "s1" not in ctx.manager.live_ids()
    text, _ = run(shell, "evict --idle 0")
    assert "evicted 4 session(s) idle >= 0 s" in text and ctx.manager.live_ids() == []
    text, _ = run(shell, "delete s1")
    assert "deleted 's1'" in text and "s1" not in ctx.manager
    assert ctx.manager.get("s2").recent_messages == [{"role": "user", "content": "q2"}]


def test_limits_apply_live(
    ctx: Any, shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEM_LIMIT", "")
    old = ctx.manager.get_or_create("s0")
    text, _ = run(
        shell, "limits --max-sessions 3 --max-memory 256MB --max-recent 4 --mem-limit 30GB"
    )
    manager, config = ctx.manager, ctx.config
    assert manager.max_sessions == config.max_sessions == 3
    assert len(manager.live_ids()) == 3  # enforced now, not at the next operation
    assert manager.max_memory_bytes == config.max_memory_bytes == 256_000_000
    assert config.max_recent == 4 == manager.policy.max_recent
    assert old.policy.max_recent == 4  # live sessions follow the new policy too
    assert manager.get_or_create("fresh").policy.max_recent == 4
    import os

    assert os.environ["MEM_LIMIT"] == ""  # the limit goes to the monitor, not the environment
    assert config.mem_limit == ctx.monitor.mem_limit == 30 * 10**9
    assert "max_sessions         3" in text and "memory_limit_source" in text
    run(shell, "limits --mem-limit 1MB")  # a small limit: the monitor sees it at once
    assert ctx.monitor.check()["limit_bytes"] == 10**6
    assert ctx.monitor.check()["limit_source"] == "mem_limit"
    text, _ = run(shell, "limits")  # no flags: just show them
    assert "max_recent           4" in text


def test_config_table_and_setting(
    ctx: Any, shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-0123")
    text, page = run(shell, "config")
    assert "sk-very-secret" not in text + page
    assert "guard_interval" in text and "Seconds between memory-pressure checks." in text
    text, _ = run(
        shell,
        "config max_sessions=7 idle_timeout=None temperature=0.2 "
        "model=llama3 warning_pct=60 max_summary_chars=500",
    )
    config = ctx.config
    assert (config.max_sessions, config.idle_timeout, config.temperature, config.model) == (
        7,
        None,
        0.2,
        "llama3",
    )
    assert ctx.manager.max_sessions == 7 and ctx.monitor.warning_pct == 60.0
    assert ctx.manager.policy.max_summary_chars == 500
    assert text.startswith("set max_sessions=7, idle_timeout=None")
    run(shell, "config idle_timeout=30")
    assert ctx.manager.idle_timeout == 30.0


def test_config_store_url_moves_sessions_live(
    ctx: Any, shell: InteractiveShell, tmp_path: Path
) -> None:
    ctx.manager.evict("s1")
    assert "bogus://" in usage_error(shell, "config store_url=bogus://x")
    assert ctx.config.store_url == "memory://"
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    text, _ = run(shell, f"config store_url={url}")
    assert "sessions_moved=" in text and ctx.config.store_url == url
    assert type(ctx.manager.store).__name__ == "SQLiteStore"
    assert ctx.manager.get("s1").recent_messages == [{"role": "user", "content": "q1"}]


def test_config_is_all_or_nothing(ctx: Any) -> None:
    with pytest.raises(ValueError, match="max_recent"):
        set_config(ctx, ["max_sessions=9", "max_recent=0"])
    assert ctx.config.max_sessions == 1000


def test_config_memory_guard_starts_the_guard(ctx: Any, shell: InteractiveShell) -> None:
    run(shell, "config memory_guard=True guard_interval=0.1")
    assert [t for t in threading.enumerate() if t.name == "agentmem-guard"]
    text, _ = run(shell, "stats")
    assert "memory guard: on, every 0.1 s" in text


def test_watch_records_each_cell(ctx: Any, shell: InteractiveShell) -> None:
    watch.clear_history()
    text, _ = run(shell, "watch on")
    assert "per-cell memory watch: on" in text
    with capture_output() as cap:
        shell.run_cell("blob = bytearray(30 * 2**20)")
    assert "agent_memory watch: In [" in cap.stdout
    records = watch.history()
    assert len(records) == 1
    assert records[0]["delta"] > 20 * MiB and records[0]["peak_delta"] >= records[0]["delta"]
    assert records[0]["seconds"] >= 0 and records[0]["rss_after"] > records[0]["rss_before"]
    shell.run_cell("del blob")
    with capture_output():  # allocated and freed within the cell: only the peak shows it
        shell.run_cell("import time\ntmp = bytearray(40 * 2**20); time.sleep(0.3); del tmp")
    spike = watch.history()[-1]
    assert abs(spike["delta"]) < 20 * MiB and spike["peak_delta"] > 30 * MiB, spike
    run(shell, "watch off")
    with capture_output() as cap:
        shell.run_cell("x = 1")
    assert "agent_memory watch" not in cap.stdout and len(watch.history()) == 3
    assert not [t for t in threading.enumerate() if t.name == "agentmem-watch"]


def ours(shell: InteractiveShell) -> dict[str, int]:
    """How many of our callbacks each cell event has."""

    def mine(cb: Any) -> bool:
        owner = getattr(cb, "__self__", cb)
        return str(getattr(type(owner), "__module__", "")).startswith("jupyter_agentmem") or str(
            getattr(cb, "__module__", "")
        ).startswith("jupyter_agentmem")

    return {e: sum(map(mine, shell.events.callbacks[e])) for e in ("pre_run_cell", "post_run_cell")}


def test_unload_removes_hooks_and_the_magic_says_not_loaded(
    ctx: Any, shell: InteractiveShell
) -> None:
    after_load = ours(shell)
    run(shell, "watch on")
    run(shell, "config memory_guard=True")
    assert ours(shell)["pre_run_cell"] == after_load["pre_run_cell"] + 1
    extension.unload()
    assert ours(shell) == {"pre_run_cell": 0, "post_run_cell": 0}
    assert not leftover_threads()
    assert "not loaded" in usage_error(shell, "stats")
    extension.load(shell, AgentMem(store_url="memory://"))  # load -> unload -> load is clean
    assert ours(shell) == after_load
    text, _ = run(shell, "stats")
    assert re.search(r"sessions\.sessions_in_memory +0\n", text)


def kernel_ok(kernel: Any, code: str) -> Any:
    """Run ``code``; judge success by IOPub (no error, nothing on stderr), not by the shell
    reply, which ``tests.kernel.Kernel.execute`` does not match to its request."""
    run = kernel.execute(code)
    stderr = [
        m["content"]["text"] for _, m in run.of_type("stream") if m["content"]["name"] == "stderr"
    ]
    assert run.error is None and not stderr, (run.error, stderr)
    return run


@pytest.mark.kernel
def test_agent_memory_in_a_real_kernel(tmp_path: Path) -> None:
    from .kernel import Kernel

    kernel = Kernel(tmp_path)
    try:
        kernel_ok(
            kernel,
            textwrap.dedent("""
            %load_ext jupyter_agentmem
            from jupyter_agentmem.notebook.extension import get_context
            get_context().manager.get_or_create("k1").add_message({"role": "user", "content": "hi"})
        """),
        )
        kernel_ok(kernel, "%agent_memory stats -o s")
        assert kernel.value("s['sessions']['sessions_in_memory']") == 1
        shown = kernel_ok(kernel, "%agent_memory --interval 0.2")
        views = [
            m
            for _, m in shown.of_type("display_data")
            if "application/vnd.jupyter.widget-view+json" in m["content"]["data"]
        ]
        assert len(views) == 1
        names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
        assert "agentmem-dashboard" in names
        kernel_ok(kernel, "%agent_memory watch on")
        assert "agent_memory watch: In [" in kernel_ok(kernel, "x = bytearray(10**7)").stdout
        bad = kernel.execute("%agent_memory bogus")
        stderr = "".join(
            m["content"]["text"]
            for _, m in bad.of_type("stream")
            if m["content"]["name"] == "stderr"
        )
        assert stderr.startswith("UsageError: argument command: invalid choice: 'bogus'")
        assert stderr.count("\n") == 1  # one line, no traceback
        kernel_ok(kernel, "%unload_ext jupyter_agentmem")
        names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
        assert not [n for n in names if n.startswith("agentmem-")], names
    finally:
        kernel.shutdown()
