"""MemoryDashboard without a browser: fake snapshots in, widget traits out; the ticker thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ipywidgets import Widget

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook import extension
from jupyter_agentmem.watch.dashboard import (
    DashboardActions,
    MemoryDashboard,
    format_text,
    has_widget_frontend,
    kernel_snapshot,
    open_dashboard,
)
from jupyter_agentmem.watch.ticker import DashboardTicker, ticker_for

MiB = 2**20
THREAD = DashboardTicker.THREAD_NAME


def fake_snapshot(
    status: str = "ok",
    pct: float = 12.5,
    rss: int = 300 * MiB,
    leak: bool = False,
    sessions: int = 25,
    **memory: Any,
) -> dict[str, Any]:
    now = time.time()
    top = [
        {
            "session_id": f"s{i}",
            "in_memory": True,
            "messages": i,
            "summary_chars": 7 * i,
            "messages_total": i,
            "compactions": 0,
            "estimated_bytes": 1000 * (sessions - i),
            "last_access": now - 60 * i,
        }
        for i in range(sessions)
    ]
    return {
        "time": now,
        "memory": {
            "rss_bytes": rss,
            "pss_bytes": None,
            "uss_bytes": None,
            "limit_bytes": 2048 * MiB,
            "limit_source": "cgroup",
            "limit_detail": "/sys/fs/cgroup/memory.max",
            "usage_pct": pct,
            "status": status,
            "leak_suspected": leak,
            **memory,
        },
        "sessions": {
            "sessions_in_memory": sessions,
            "sessions_persisted": 40,
            "estimated_bytes": 5 * MiB,
            "max_memory_bytes": 500 * MiB,
            "max_sessions": 1000,
            "compactions": 3,
            "evictions": 4,
            "restores": 5,
            "truncated_chars_saved": 2 * MiB,
            "last_store_error": None,
        },
        "top": top,
        "guard": "memory guard: on, every 2 s",
    }


def threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def context() -> Iterator[extension.KernelContext]:
    extension.unload()
    ctx = extension.load(None, AgentMem(store_url="memory://"))
    yield ctx
    extension.unload()
    assert wait_for(lambda: not threads()), "a dashboard thread outlived unload"


# ------------------------------------------------------------------- rendering
@pytest.mark.parametrize(
    ("status", "style"), [("ok", "success"), ("warning", "warning"), ("critical", "danger")]
)
def test_bar_value_and_colour_follow_status(status: str, style: str) -> None:
    dash = MemoryDashboard(lambda: fake_snapshot(status=status, pct=81.25))
    dash.refresh()
    state = dash.bar.get_state()
    assert state["value"] == 81.25
    assert state["bar_style"] == style
    assert status in dash.header.value
    assert "RSS 300.0 MiB of 2.0 GiB (cgroup)" in dash.memory_label.value
    dash.close()


def test_children_are_built_once_and_progress_is_clamped() -> None:
    dash = MemoryDashboard(lambda: fake_snapshot(pct=140.0))
    children = dash.children
    assert isinstance(children, tuple)
    dash.refresh()
    dash.refresh()
    assert dash.children is children
    assert dash.bar.value == 100.0
    dash.close()


def test_table_shows_only_the_top_n() -> None:
    dash = MemoryDashboard(lambda: fake_snapshot(sessions=25), top_n=10)
    dash.refresh()
    body = dash.table.value.split("<tbody>")[1]
    assert body.count("<tr>") == 10
    assert "<td>s0</td>" in body and "<td>s9</td>" in body and "<td>s10</td>" not in body
    assert "Largest 10 sessions" in dash.table.value
    assert "1 min ago" in body  # s1 was active 60 s before the snapshot
    dash.close()


def test_leak_warning_is_shown_only_when_suspected() -> None:
    leak = {"on": False}
    dash = MemoryDashboard(lambda: fake_snapshot(leak=leak["on"]))
    dash.refresh()
    assert dash.leak_warning.value == "" and dash.leak_warning.layout.display == "none"
    leak["on"] = True
    dash.refresh()
    assert "memory leak" in dash.leak_warning.value
    assert dash.leak_warning.layout.display == ""
    leak["on"] = False
    dash.refresh()
    assert dash.leak_warning.value == ""
    dash.close()


def test_session_ids_are_escaped() -> None:
    snap = fake_snapshot(sessions=2)
    snap["top"][0]["session_id"] = "<script>alert('x')</script>"
    dash = MemoryDashboard(lambda: snap)
    dash.refresh()
    assert "<script>" not in dash.table.value
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in dash.table.value
    dash.close()


def test_pss_uss_totals_and_guard_line() -> None:
    dash = MemoryDashboard(lambda: fake_snapshot(pss_bytes=200 * MiB, uss_bytes=150 * MiB))
    dash.refresh()
    assert "PSS 200.0 MiB" in dash.memory_label.value and "USS 150.0 MiB" in dash.memory_label.value
    totals = dash.totals.value
    for text in (
        "25 of max 1,000",
        "5.0 MiB of 500.0 MiB budget",
        "3 / 4 / 5",
        "truncated chars saved</td><td>2,097,152",
        "memory guard: on",
    ):
        assert text in totals
    dash.close()


def test_history_is_bounded_and_drawn_as_svg() -> None:
    rss = iter(range(100 * MiB, 10**12, MiB))
    dash = MemoryDashboard(lambda: fake_snapshot(rss=next(rss)), history=50)
    for _ in range(200):
        dash.refresh()
    assert len(dash._history) == 50
    assert dash.chart.value.count("<polyline") == 2
    assert "max 299.0 MiB" in dash.chart.value  # the 200th sample
    dash.close()


def test_one_refresh_sends_at_most_one_message_per_widget(monkeypatch: Any) -> None:
    dash = MemoryDashboard(lambda: fake_snapshot(pct=time.time() % 100))
    dash.refresh()
    sent: dict[str, int] = {}

    def count(self: Widget, msg: dict[str, Any], buffers: Any = None) -> None:
        sent[self.model_id] = sent.get(self.model_id, 0) + 1

    monkeypatch.setattr(Widget, "_send", count)
    dash.refresh()
    assert sent, "a refresh with new data sent nothing"
    assert max(sent.values()) == 1
    dash.close()


def test_snapshot_failure_is_shown_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    fail = {"on": True}

    def snapshot() -> dict[str, Any]:
        if fail["on"]:
            raise RuntimeError("store <down>")
        return fake_snapshot()

    dash = MemoryDashboard(snapshot)
    with caplog.at_level(logging.WARNING, logger="jupyter_agentmem.watch.dashboard"):
        for _ in range(3):
            dash.refresh()  # never raises
    assert "refresh failed: RuntimeError: store &lt;down&gt;" in dash.header.value
    assert len([r for r in caplog.records if "refresh failed" in r.getMessage()]) == 1
    fail["on"] = False
    dash.refresh()
    assert "failed" not in dash.header.value
    dash.close()


def test_buttons_call_the_actions() -> None:
    calls: list[Any] = []
    actions = DashboardActions(
        compact_all=lambda: calls.append("compact") or 3,
        evict_idle=lambda s: calls.append(("evict", s)) or 2,
    )
    dash = MemoryDashboard(fake_snapshot, actions)
    dash.compact_button.click()
    assert calls == ["compact"] and "compacted: 3 session(s)" in dash.message.value
    dash.idle_seconds.value = 42
    dash.evict_button.click()
    assert calls[-1] == ("evict", 42.0) and "evicted (idle &gt;= 42 s): 2" in dash.message.value
    dash.close()


def test_failing_action_is_shown_not_raised() -> None:
    def boom() -> int:
        raise OSError("disk full")

    dash = MemoryDashboard(fake_snapshot, DashboardActions(boom, lambda s: 0))
    dash.compact_button.click()
    assert "compacted failed: OSError: disk full" in dash.message.value
    dash.close()


def test_buttons_disabled_without_actions_and_pause_toggles() -> None:
    calls = {"n": 0}

    def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        return fake_snapshot()

    dash = MemoryDashboard(snapshot)
    assert dash.compact_button.disabled and dash.evict_button.disabled
    dash.pause_button.click()
    assert dash.paused and dash.pause_button.description == "Resume"
    assert "paused" in dash.header.value
    before = calls["n"]
    dash.tick()
    assert calls["n"] == before  # the ticker skips a paused dashboard
    dash.pause_button.click()
    assert not dash.paused and dash.pause_button.description == "Pause"
    dash.tick()
    assert calls["n"] == before + 2  # resume refreshed, then the tick did
    dash.close()


# --------------------------------------------------------------------- ticker
def test_ticker_refreshes_and_stops_when_the_widget_closes() -> None:
    ticker = DashboardTicker()
    calls = {"n": 0}

    def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        return fake_snapshot()

    dash = MemoryDashboard(snapshot)
    dash.ticker = ticker
    ticker.add(dash, 0.05)
    assert wait_for(lambda: calls["n"] >= 5), "the ticker did not refresh"
    assert len(threads()) == 1
    dash.close()
    assert not threads() and not ticker.running
    n = calls["n"]
    time.sleep(0.2)
    assert calls["n"] == n


def test_two_dashboards_share_one_thread(context: extension.KernelContext) -> None:
    first = open_dashboard(context, interval=0.05)
    second = open_dashboard(context, interval=0.1)
    assert ticker_for(context).dashboards == [first, second]
    assert len(threads()) == 1
    rss = first.memory_label.value
    assert wait_for(lambda: len(second._history) >= 3)
    assert "RSS" in rss
    first.close()
    assert len(threads()) == 1  # the second one still needs it
    second.close()
    assert wait_for(lambda: not threads())
    third = open_dashboard(context, interval=0.05)  # a new thread for a new dashboard
    assert len(threads()) == 1
    third.close()


def test_unload_closes_dashboards_and_ends_the_thread(context: extension.KernelContext) -> None:
    dash = open_dashboard(context, interval=0.05)
    assert threads()
    extension.unload()
    assert not threads()
    assert dash.comm is None  # closed with the context


def test_ticker_keeps_a_bounded_number_of_dashboards() -> None:
    ticker = DashboardTicker(max_dashboards=3)
    dashes = []
    for _ in range(5):
        dash = MemoryDashboard(fake_snapshot)
        dash.ticker = ticker
        ticker.add(dash, 1.0)
        dashes.append(dash)
    assert ticker.dashboards == dashes[2:]
    assert dashes[0].comm is None and dashes[1].comm is None
    ticker.close()
    assert not threads() and all(d.comm is None for d in dashes)


def test_widget_closed_elsewhere_is_dropped() -> None:
    ticker = DashboardTicker()
    dash = MemoryDashboard(fake_snapshot)
    ticker.add(dash, 0.05)  # not attached: close() will not tell the ticker
    Widget.close(dash)
    assert wait_for(lambda: not ticker.running)


def test_interval_is_validated() -> None:
    with pytest.raises(ValueError, match="interval"):
        DashboardTicker().add(MemoryDashboard(fake_snapshot), 0.0)
    with pytest.raises(ValueError):
        MemoryDashboard(fake_snapshot, top_n=0)


# ------------------------------------------------------------- kernel wiring
def test_kernel_snapshot_from_the_real_manager(context: extension.KernelContext) -> None:
    for i in range(30):
        context.manager.get_or_create(f"s{i}").add_message({"role": "user", "content": "x" * i})
    snap = kernel_snapshot(context, top_n=5)
    assert set(snap) == {"time", "memory", "sessions", "top", "guard"}
    assert snap["memory"]["rss_bytes"] > 0 and snap["memory"]["status"] in {
        "ok",
        "warning",
        "critical",
    }
    assert snap["sessions"]["sessions_in_memory"] == 30
    assert [s["session_id"] for s in snap["top"]] == ["s29", "s28", "s27", "s26", "s25"]
    dash = open_dashboard(context, interval=5)
    assert "<td>s29</td>" in dash.table.value  # rendered once before the first tick
    dash.close()


def test_terminal_fallback_prints_text(
    context: extension.KernelContext, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_agentmem.notebook.memory_magics import MemoryMagics

    shell = InteractiveShell.instance()
    assert not has_widget_frontend(shell) and not has_widget_frontend(None)
    context.manager.get_or_create("terminal-session").add_message({"role": "user", "content": "hi"})
    shell.register_magics(MemoryMagics(shell, context))
    shell.run_line_magic("agent_memory", "")
    out = capsys.readouterr().out
    assert out.startswith("Kernel memory: RSS ")
    assert "terminal-session" in out and "Largest 1 sessions" in out
    assert not threads()  # no widget, no thread


def test_format_text_mentions_leak_and_store_error() -> None:
    snap = fake_snapshot(leak=True, sessions=3)
    snap["sessions"]["last_store_error"] = "OSError: disk full"
    text = format_text(snap, top_n=2)
    assert "possible leak" in text and "store error: OSError: disk full" in text
    assert "s1" in text and "s2 " not in text
