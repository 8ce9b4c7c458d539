"""Settings the Jupyter way (IPython's ``%config AgentMem...`` applies live), ``%agent_memory``
values for people, and credentials that never show: through a real InteractiveShell, and
once through a real kernel with a real password-protected redis-server."""

from __future__ import annotations

import json
import re
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook import extension

from . import redis_server as server_helper
from .redis_server import RedisServer

redis_server = server_helper.redis_server  # the module-scoped fixture
PASSWORD = "hunter2-very-secret"


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    extension.unload()
    before = set(threading.enumerate())  # other tests' managers may still be winding down
    sh = InteractiveShell.instance()
    extension.load(sh, AgentMem(store_url="memory://", memory_guard=False))
    yield sh
    extension.unload()
    left = set(threading.enumerate()) - before
    assert not [t for t in left if t.name.startswith("agentmem-")]


def stderr(run: Any) -> str:
    return "".join(
        m["content"]["text"] for _, m in run.of_type("stream") if m["content"]["name"] == "stderr"
    )


def shown(shell: InteractiveShell, line: str, magic: str = "agent_memory") -> str:
    with capture_output() as cap:
        shell.run_line_magic(magic, line)
    return cap.stdout + cap.stderr + "".join(o.data["text/plain"] for o in cap.outputs)


def conversation(ctx: Any, sid: str, questions: int) -> None:
    state = ctx.manager.get_or_create(sid)
    for i in range(questions):
        state.add_message({"role": "user", "content": f"q{i}"})
        state.add_message({"role": "assistant", "content": None, "tool_calls": []})
        state.add_message({"role": "assistant", "content": f"a{i}"})


def test_ipython_config_magic_sets_and_applies_live(
    shell: InteractiveShell, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = extension.get_context()
    for i in range(5):
        conversation(ctx, f"s{i}", 1)
    shown(shell, "AgentMem.max_sessions = 3", "config")
    assert ctx.config.max_sessions == ctx.manager.max_sessions == 3
    assert len(ctx.manager.live_ids()) == 3  # enforced at once
    shown(shell, "AgentMem.warning_pct = 60", "config")
    shown(shell, "AgentMem.max_recent = 4", "config")
    assert ctx.monitor.warning_pct == 60.0 and ctx.manager.policy.max_recent == 4
    shown(shell, "AgentMem.max_recent = 0", "config")  # refused (IPython logs why): no change
    assert "max_recent must be at least 1" in caplog.text
    assert ctx.config.max_recent == ctx.manager.policy.max_recent == 4
    shown(shell, "AgentMem.warning_pct = 95", "config")
    assert "warning_pct < critical_pct" in caplog.text and ctx.monitor.warning_pct == 60.0
    assert "AgentMem.max_sessions" in shown(shell, "AgentMem", "config")
    extension.unload()
    assert ctx.config not in shell.configurables
    ctx.config.max_sessions = 7  # no longer observed: the closed manager is left alone
    assert ctx.manager.max_sessions == 3


def test_stats_are_for_people_and_dash_o_keeps_raw_numbers(shell: InteractiveShell) -> None:
    ctx = extension.get_context()
    conversation(ctx, "a", 2)
    text = shown(shell, "stats -o raw")
    assert re.search(r"memory\.rss_bytes +\d+\.\d (MiB|GiB)\n", text), text
    assert re.search(r"memory\.timestamp +\d\d:\d\d:\d\d \(\d+ s ago\)\n", text), text
    assert re.search(r"sessions\.estimated_bytes +[\d.]+ (B|KiB)\n", text), text
    assert re.search(r"memory\.usage_pct +\d+\.\d%\n", text), text
    raw = shell.user_ns["raw"]
    assert isinstance(raw["memory"]["timestamp"], float) and raw["memory"]["timestamp"] > 1e9
    assert isinstance(raw["sessions"]["estimated_bytes"], int)


def test_sessions_count_user_turns_and_show_what_the_store_knows(
    shell: InteractiveShell,
) -> None:
    ctx = extension.get_context()
    conversation(ctx, "live", 3)  # 3 questions, 9 messages
    conversation(ctx, "gone", 2)
    ctx.manager.evict("gone")
    text = shown(shell, "sessions")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]}
    assert rows["live"][1:3] == ["yes", "9"] and rows["live"][-1] == "3", text
    gone = rows["gone"]
    assert gone[1:3] == ["no", "6"] and gone[-1] == "2", text
    assert re.search(r"gone +no +6 +\d+ B +\d\d:\d\d:\d\d \(\d+ s ago\) +2$", text, re.M), text
    assert "gone" not in ctx.manager.live_ids()  # listed without being restored


@pytest.mark.kernel
@pytest.mark.redis
def test_redis_password_appears_in_no_output(redis_server: RedisServer, tmp_path: Path) -> None:
    import redis

    from .kernel import Kernel

    redis_server.start()
    client = redis.Redis(port=redis_server.port)
    client.config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    bad = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    kernel = Kernel(tmp_path)
    try:
        runs = [
            kernel.execute(code)
            for code in (
                textwrap.dedent("""
                    %load_ext jupyter_agentmem
                    from jupyter_agentmem import get_manager
                    get_manager().get_or_create("k").add_message({"role": "user", "content": "hi"})
                """),
                f"%agent_memory config store_url={url}",
                "%agent_memory config",
                "%agent_memory stats",
                "%config AgentMem",
                "%config AgentMem.store_url",
                f"%agent_memory config store_url={bad}",
                f"%config AgentMem.store_url = {bad!r}",
                "%agent_memory sessions",
            )
        ]
        assert kernel.value("get_manager().store.__class__.__name__") == "RedisStore"
        shown = ("stream", "display_data", "update_display_data", "execute_result", "error")
        outputs = [m["content"] for run in runs for _, m in run.of_type(*shown)]
        everything = json.dumps(outputs)
        assert "redis://:***@127.0.0.1" in everything  # the URL is shown, masked
        at = everything.find(PASSWORD)
        assert at < 0, everything[max(0, at - 300) : at + 100]
        for refused in runs[6:8]:  # the bad URL is refused both ways, and said so masked
            assert "store_url='redis://:***@127.0.0.1:1/0'" in stderr(refused), refused.messages
        assert kernel.value("get_manager().store.__class__.__name__") == "RedisStore"
        assert kernel.value("get_manager().get_or_create('k').recent_messages") == [
            {"role": "user", "content": "hi"}
        ]
    finally:
        kernel.shutdown()
        client.config_set("requirepass", "")
