"""The memory guard: eviction loop with an injected monitor, notices, and a real kernel
whose MEM_LIMIT is lowered at run time."""

from __future__ import annotations

import logging
import os
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.notebook import extension
from jupyter_agentmem.stores import MemoryStore
from jupyter_agentmem.watch.guard import (
    MemoryGuard,
    Notices,
    describe_guard,
    get_guard,
    install_guard,
    install_notices,
)

THREAD = MemoryGuard.THREAD_NAME


class ScriptedMonitor:
    """Answers ``check()`` with the next status of a script (the last one repeats)."""

    def __init__(self, *statuses: str) -> None:
        self.script = list(statuses)
        self.calls = 0

    def check(self, detailed: bool = False) -> dict[str, Any]:
        status = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        pct = {"ok": 50.0, "warning": 80.0, "critical": 95.0}[status]
        return {
            "status": status,
            "usage_pct": pct,
            "limit_bytes": 300 * 2**20,
            "limit_source": "MEM_LIMIT",
        }


def manager_with(n: int) -> SessionManager:
    manager = SessionManager(store=MemoryStore())
    for i in range(n):
        manager.get_or_create(f"s{i:02d}").add_message({"role": "user", "content": f"m{i}"})
    return manager


def guard_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ------------------------------------------------------------- eviction loop
def test_evicts_least_recently_used_first_until_ok() -> None:
    manager = manager_with(30)
    manager.get_or_create("s00")  # now the most recently used
    monitor = ScriptedMonitor("critical", "critical", "ok")  # ok after the second batch
    released: list[bool] = []
    told: list[tuple[str, str]] = []
    guard = MemoryGuard(
        monitor, manager, release=released.append, notify=lambda k, t: told.append((k, t))
    )
    report = guard.check_once()
    assert report is not None
    assert report.evicted == 12  # batches of 4 then 8
    assert manager.live_ids()[0] == "s13" and manager.live_ids()[-1] == "s00"
    assert manager.stats().evictions == 12 and released == [True, False]
    assert report.status_after == "ok" and report.estimated_freed > 0
    assert [k for k, _ in told] == ["guard"]
    assert "evicted 12 least-recently-used agent session(s)" in told[0][1]
    assert "95% of 300 MiB (MEM_LIMIT)" in told[0][1] and "Now 50%" in told[0][1]
    assert manager.get("s01") is not None  # evicted, not lost: restored on use
    assert manager.stats().restores == 1


def test_the_notice_is_posted_before_the_report_is_published() -> None:
    """A cell that waits for ``guard.reports`` (notebook 04) must find the notice
    already posted, so that it shows at the end of that cell, not the next one."""
    manager = manager_with(8)
    reports_seen_when_told: list[int] = []
    guard: MemoryGuard

    def notify(key: str, text: str) -> None:
        reports_seen_when_told.append(len(guard.reports))

    guard = MemoryGuard(
        ScriptedMonitor("critical", "ok"), manager, release=lambda collect: None, notify=notify
    )
    assert guard.check_once() is not None
    assert reports_seen_when_told == [0] and len(guard.reports) == 1


def test_evicts_everything_when_memory_stays_critical_and_says_so_once() -> None:
    manager = manager_with(10)
    told: list[tuple[str, str]] = []
    guard = MemoryGuard(
        ScriptedMonitor("critical"),
        manager,
        release=lambda collect: None,
        notify=lambda k, t: told.append((k, t)),
    )
    report = guard.check_once()
    assert report is not None and report.evicted == 10 and report.left_in_memory == 0
    assert "Still critical" in told[0][1]
    for _ in range(5):  # nothing left: one "nothing to evict" message for the whole episode
        assert guard.check_once() is None
    assert [k for k, _ in told] == ["guard", "guard-empty"]
    assert "no agent session is left in memory" in told[1][1]


def test_one_pending_message_per_critical_episode_with_cumulative_counts() -> None:
    manager = manager_with(5)
    now = {"status": "critical"}

    class Controlled(ScriptedMonitor):
        def check(self, detailed: bool = False) -> dict[str, Any]:
            return ScriptedMonitor(now["status"]).check()

    notices = Notices(shell=None)
    guard = MemoryGuard(
        Controlled(),
        manager,
        first_batch=1,
        release=lambda collect: now.update(status="ok"),
        notify=lambda k, t: notices.post(t, k),
    )
    guard.check_once()  # evicts s00, then ok
    now["status"] = "critical"
    guard.check_once()  # still the same episode: evicts s01
    [pending] = [p.split(";")[1] for p in notices.pending()]
    assert re.fullmatch(
        r" evicted 2 least-recently-used agent session\(s\) "
        r"\(~\d+ [KM]?i?B estimated\) to the store",
        pending,
    ), pending
    now["status"] = "ok"
    guard.check_once()  # the episode ends
    now["status"] = "critical"
    guard.check_once()  # a new one: evicts s02; the pending message is replaced, not added
    assert len(notices.pending()) == 1 and "evicted 1 " in notices.pending()[0]
    assert notices.flush() and not notices.pending() and notices.generation == 1


def test_disabled_guard_does_not_check() -> None:
    config = AgentMem(memory_guard=False)
    monitor = ScriptedMonitor("critical")
    guard = MemoryGuard(monitor, manager_with(2), config=config)
    assert guard.check_once() is None and monitor.calls == 0
    config.memory_guard = True
    assert guard.check_once() is not None


def test_failing_store_keeps_sessions_and_guarding_goes_on() -> None:
    class BrokenStore(MemoryStore):
        def save(self, session_id: str, data: Any) -> None:
            raise OSError("disk full")

    manager = SessionManager(store=BrokenStore())
    manager.get_or_create("a").add_message({"role": "user", "content": "hi"})
    guard = MemoryGuard(
        ScriptedMonitor("critical"), manager, release=lambda collect: None, notify=lambda k, t: None
    )
    report = guard.check_once()
    assert report is not None and report.evicted == 0 and manager.live_ids() == ["a"]


# ------------------------------------------------------------------ notices
@pytest.fixture
def shell_context() -> Iterator[extension.KernelContext]:
    from IPython.core.interactiveshell import InteractiveShell

    extension.unload()
    shell = InteractiveShell.instance()
    ctx = extension.load(shell, AgentMem(store_url="memory://", guard_interval=0.05))
    yield ctx
    extension.unload()


def test_notices_show_once_at_the_end_of_the_next_cell(
    shell_context: extension.KernelContext, capsys: pytest.CaptureFixture[str]
) -> None:
    shell = shell_context.shell
    assert shell is not None
    notices = install_notices(shell_context)
    assert install_notices(shell_context) is notices
    notices.post("first", key="k")
    notices.post("second", key="k")  # same key: replaces
    shell.run_cell("x = 1")
    assert capsys.readouterr().out.count("second") == 1
    shell.run_cell("x = 2")
    assert "second" not in capsys.readouterr().out
    extension.unload()
    assert notices.flush not in shell.events.callbacks["post_run_cell"]


def test_warnings_from_background_threads_wait_for_the_cell(
    shell_context: extension.KernelContext, capsys: pytest.CaptureFixture[str]
) -> None:
    notices = install_notices(shell_context)
    logger = logging.getLogger("jupyter_agentmem.watch.monitor")
    thread = threading.Thread(target=lambda: logger.warning("kernel memory ok -> critical"))
    thread.start()
    thread.join()
    assert capsys.readouterr().err == ""  # not printed into whatever cell runs
    assert notices.pending() == ["jupyter-agentmem warning: kernel memory ok -> critical"]
    logger.warning("from the kernel thread")  # unchanged: not queued
    assert len(notices.pending()) == 1


def test_install_guard_is_idempotent_and_stops_on_unload(
    shell_context: extension.KernelContext,
) -> None:
    guard = install_guard(shell_context)
    assert install_guard(shell_context) is guard and get_guard(shell_context) is guard
    assert len(guard_threads()) == 1
    assert describe_guard(shell_context).startswith("memory guard: on, every 0.05 s")
    extension.unload()
    assert not guard_threads()
    assert not guard.alive


def test_mem_limit_set_at_run_time_triggers_eviction_in_process(
    shell_context: extension.KernelContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = shell_context
    for i in range(20):
        ctx.manager.get_or_create(f"s{i}").add_message({"role": "user", "content": "x"})
    guard = install_guard(ctx)
    rss = ctx.monitor.check()["rss_bytes"]
    monkeypatch.setenv("MEM_LIMIT", str(int(rss / 0.95)))
    assert wait_for(lambda: bool(guard.reports), 5), "the guard did not act"
    assert guard.reports[0].limit_source == "MEM_LIMIT" and ctx.manager.stats().evictions > 0
    monkeypatch.delenv("MEM_LIMIT")
    assert ctx.shell is not None
    ctx.shell.run_cell("pass")
    assert capsys.readouterr().out.count("Memory guard: kernel memory reached") == 1


# ------------------------------------------------------------- real kernel
@pytest.mark.kernel
def test_guard_in_a_real_kernel_when_mem_limit_drops(tmp_path: Path) -> None:
    from .kernel import Kernel

    kernel = Kernel(tmp_path)
    try:
        kernel.ok(
            textwrap.dedent("""
            %load_ext jupyter_agentmem
            %agent_memory config max_recent=1000 max_recent_bytes=268435456 guard_interval=0.2
            import os, psutil
            from jupyter_agentmem.notebook.extension import get_context
            from jupyter_agentmem.watch.guard import install_guard
            ctx = get_context()
            guard = install_guard(ctx)
            for i in range(40):  # ~40 MiB of conversation held in memory
                ctx.manager.get_or_create(f"s{i}").add_message(
                    {"role": "user", "content": chr(65 + i % 26) * (1 << 20)})
        """)
        )
        before = kernel.value("ctx.manager.stats().sessions_in_memory")
        assert before == 40
        run = kernel.ok(
            textwrap.dedent("""
            import time
            rss = psutil.Process().memory_info().rss
            os.environ["MEM_LIMIT"] = str(int(rss / 0.93))  # now at 93%: critical
            deadline = time.time() + 20
            while not guard.reports and time.time() < deadline:  # the guard acts meanwhile
                time.sleep(0.1)
            print("evictions", ctx.manager.stats().evictions)
        """),
            timeout=60,
        )
        shown = [m["content"]["data"]["text/plain"] for _, m in run.of_type("display_data")]
        guard_lines = [s for s in shown if "Memory guard: kernel memory reached" in s]
        assert len(guard_lines) == 1, shown
        assert "(MEM_LIMIT)" in guard_lines[0]
        status_lines = [s for s in shown if "kernel memory" in s and "->" in s]
        assert len(status_lines) == 1, shown  # the monitor's changes, coalesced to the latest
        stderr = [
            m["content"]["text"]
            for _, m in run.of_type("stream")
            if m["content"]["name"] == "stderr"
        ]
        assert not stderr, f"a background thread wrote into the running cell: {stderr}"
        stats = kernel.value("ctx.manager.stats().as_dict()")
        assert stats["evictions"] > 0 and stats["sessions_in_memory"] < before
        again = kernel.ok("x = 1")  # the notice is not repeated
        assert not any("Memory guard" in str(m["content"]) for _, m in again.messages)
        assert (
            kernel.value("get_context().manager.get('s0').recent_messages[0]['content'][:3]")
            == "AAA"
        )  # evicted to SQLite, restored intact
        kernel.ok('os.environ.pop("MEM_LIMIT")\n%unload_ext jupyter_agentmem')
        names = kernel.value("[t.name for t in __import__('threading').enumerate()]")
        assert THREAD not in names
    finally:
        kernel.shutdown()


def test_guard_thread_gone_after_all_tests_in_this_module() -> None:
    extension.unload()
    assert wait_for(lambda: not guard_threads(), 5)
    assert os.environ.get("MEM_LIMIT") is None
