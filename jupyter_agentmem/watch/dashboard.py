"""Live ipywidgets view of the kernel's memory and sessions (``%agent_memory``).

Why it is built this way: the view gets all its data from an injected
``snapshot()`` callable, so it is tested with a fake dict and no psutil; it
builds its widgets once and updates them under ``hold_sync`` (one message per
changed widget per refresh, never one per trait); and it is refreshed by one
shared daemon *thread* per kernel, because an asyncio task in the kernel loop
freezes while another cell runs -- exactly when a memory view matters most.
Nothing here prints: a failing snapshot is logged once and shown in the view.

The snapshot format (see :func:`kernel_snapshot`)::

    {"time": float,                    # epoch seconds of the sample
     "memory": MemoryMonitor.check(),  # rss_bytes, pss_bytes?, uss_bytes?, limit_bytes,
                                       # limit_source, usage_pct, status, leak_suspected
     "sessions": SessionManager.stats(),  # sessions_in_memory, sessions_persisted,
                                       # estimated_bytes, max_memory_bytes, compactions,
                                       # evictions, restores, truncated_chars_saved, ...
     "top": [SessionManager.session_info(...), ...],  # largest sessions, at most top_n
     "guard": str}                     # one line about the memory guard (optional)
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .ticker import DashboardTicker, ticker_for

if TYPE_CHECKING:
    from jupyter_agentmem.notebook.extension import KernelContext

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]
STATUS_STYLE = {"ok": "success", "warning": "warning", "critical": "danger"}
_COLOURS = {"ok": "#2e7d32", "warning": "#ef6c00", "critical": "#c62828"}
_TABLE_CSS = (
    "<style>.agentmem-table{border-collapse:collapse}.agentmem-table th,"
    ".agentmem-table td{text-align:left;padding:1px 14px 1px 0;line-height:1.3}</style>"
)
SESSION_HEADERS = ("session", "messages", "summary chars", "bytes", "last active", "in memory")


# ------------------------------------------------------------------ formatting
def fmt_bytes(n: float | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``None`` -> ``"n/a"``."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_age(seconds: float | None) -> str:
    """A short human age: ``"4 s"``, ``"12 min"``, ``"3 h"``, ``"2 d"``."""
    if seconds is None:
        return "n/a"
    s = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            return f"{s / size:.0f} {unit}"
    return f"{s:.0f} s"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table for terminals and ``text/plain``."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; every cell is escaped (session ids are user input)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f"<table class='agentmem-table'>{_TABLE_CSS}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def session_rows(top: Sequence[dict[str, Any]], now: float) -> list[tuple[object, ...]]:
    """Rows of the largest-sessions table from ``session_info`` dicts."""
    rows: list[tuple[object, ...]] = []
    for s in top:
        last = s.get("last_access")
        rows.append(
            (
                s.get("session_id", "?"),
                "n/a" if s.get("messages") is None else s["messages"],
                s.get("summary_chars", "n/a"),
                fmt_bytes(s.get("estimated_bytes")),
                "n/a" if last is None else fmt_age(now - float(last)) + " ago",
                "yes" if s.get("in_memory") else "no",
            )
        )
    return rows


def memory_line(mem: dict[str, Any]) -> str:
    """``RSS 512.0 MiB of 2.0 GiB (cgroup) -- 25.0% [ok]`` (PSS/USS when measured)."""
    parts = [f"RSS {fmt_bytes(mem.get('rss_bytes'))}"]
    parts += [
        f"{k.upper()} {fmt_bytes(mem[f'{k}_bytes'])}"
        for k in ("pss", "uss")
        if mem.get(f"{k}_bytes") is not None
    ]
    return (
        f"{' · '.join(parts)} of {fmt_bytes(mem.get('limit_bytes'))} "
        f"({mem.get('limit_source', '?')}) — {float(mem.get('usage_pct') or 0):.1f}% "
        f"[{mem.get('status', '?')}]"
    )


def totals_rows(ses: dict[str, Any]) -> list[tuple[str, str]]:
    """The manager's counters as (name, value) pairs."""
    persisted = ses.get("sessions_persisted")
    return [
        (
            "sessions in memory",
            f"{ses.get('sessions_in_memory', 0):,} of max {ses.get('max_sessions', 0):,}",
        ),
        ("sessions persisted", "n/a" if persisted is None else f"{persisted:,}"),
        (
            "estimated bytes",
            f"{fmt_bytes(ses.get('estimated_bytes'))} of "
            f"{fmt_bytes(ses.get('max_memory_bytes'))} budget",
        ),
        (
            "compactions / evictions / restores",
            f"{ses.get('compactions', 0):,} / "
            f"{ses.get('evictions', 0):,} / "
            f"{ses.get('restores', 0):,}",
        ),
        ("truncated chars saved", f"{int(ses.get('truncated_chars_saved') or 0):,}"),
    ]


def format_text(snap: Snapshot, top_n: int = 10) -> str:
    """The whole snapshot as plain text: the terminal fallback of the dashboard."""
    mem, ses = snap.get("memory") or {}, snap.get("sessions") or {}
    now = float(snap.get("time") or time.time())
    lines = ["Kernel memory: " + memory_line(mem)]
    if mem.get("leak_suspected"):
        lines.append("WARNING: possible leak: RSS keeps growing while the session count is flat")
    lines += [f"{k}: {v}" for k, v in totals_rows(ses)]
    if ses.get("last_store_error"):
        lines.append(f"store error: {ses['last_store_error']}")
    if snap.get("guard"):
        lines.append(str(snap["guard"]))
    top = list(snap.get("top") or [])[:top_n]
    if top:
        lines += [
            "",
            f"Largest {len(top)} sessions:",
            text_table(SESSION_HEADERS, session_rows(top, now)),
        ]
    return "\n".join(lines)


def sparkline(values: Sequence[float], colour: str, width: int = 260, height: int = 36) -> str:
    """An inline SVG polyline scaled to the window's min..max (no matplotlib needed)."""
    if len(values) < 2:
        return f"<svg width='{width}' height='{height}'></svg>"
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    pts = " ".join(
        f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    return (
        f"<svg class='agentmem-spark' width='{width}' height='{height}'>"
        f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{pts}'/></svg>"
    )


# ------------------------------------------------------------------ the widget
@dataclass(frozen=True)
class DashboardActions:
    """What the buttons do; injected so the view never imports the manager."""

    compact_all: Callable[[], int]
    evict_idle: Callable[[float], int]


_LEAK_HTML = (
    "<div style='color:#c62828'><b>Possible memory leak:</b> RSS keeps growing while "
    "the session count stays flat. Look for growing lists, caches or figures.</div>"
)


class MemoryDashboard(widgets.VBox):  # type: ignore[misc]
    """Process memory against the real limit, an RSS history, totals, largest sessions.

    ``snapshot`` returns the dict documented in this module; ``actions`` enables
    the buttons.  Call :meth:`refresh` to update it (a :class:`DashboardTicker`
    does so on a timer); :meth:`close` detaches it from its ticker.
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        actions: DashboardActions | None = None,
        top_n: int = 10,
        history: int = 120,
        **kwargs: Any,
    ) -> None:
        if top_n < 1 or history < 2:
            raise ValueError("top_n must be >= 1 and history >= 2")
        self._snapshot_fn, self._actions, self.top_n = snapshot, actions, top_n
        self._history: deque[tuple[float, int, int]] = deque(maxlen=history)
        self._lock = threading.RLock()
        self._failed: str | None = None
        self.paused = False
        self.ticker: DashboardTicker | None = None
        self.header = widgets.HTML("<b>Agent memory</b>")
        self.bar = widgets.FloatProgress(
            value=0.0,
            min=0.0,
            max=100.0,
            description="Memory",
            bar_style="success",
            layout=widgets.Layout(width="70%"),
        )
        self.memory_label = widgets.HTML()
        self.leak_warning = widgets.HTML(layout=widgets.Layout(display="none"))
        self.chart, self.totals, self.table = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.compact_button = widgets.Button(description="Compact all", disabled=actions is None)
        self.idle_seconds = widgets.BoundedFloatText(
            value=300.0,
            min=0.0,
            max=1e9,
            description="idle s",
            layout=widgets.Layout(width="170px"),
        )
        self.evict_button = widgets.Button(description="Evict idle", disabled=actions is None)
        self.pause_button = widgets.Button(description="Pause")
        self.message = widgets.HTML()
        self.compact_button.on_click(self._on_compact)
        self.evict_button.on_click(self._on_evict)
        self.pause_button.on_click(self._on_pause)
        self._synced = (
            self.header,
            self.bar,
            self.memory_label,
            self.leak_warning,
            self.chart,
            self.totals,
            self.table,
            self.message,
        )
        controls = widgets.HBox(
            (self.compact_button, self.idle_seconds, self.evict_button, self.pause_button)
        )
        self._owned: tuple[widgets.Widget, ...] = (
            *self._synced,
            self.compact_button,
            self.idle_seconds,
            self.evict_button,
            self.pause_button,
            controls,
        )
        self.chart.layout.margin = "0 32px 0 0"
        middle = widgets.HBox((self.chart, self.totals))
        self._owned += (middle,)
        super().__init__(
            children=(
                self.header,
                self.bar,
                self.memory_label,
                self.leak_warning,
                middle,
                self.table,
                controls,
                self.message,
            ),
            **kwargs,
        )
        self.add_class("agentmem-dashboard")

    # -------------------------------------------------------------- refresh
    def refresh(self) -> None:
        """Take one snapshot and update every widget; errors are shown, never raised."""
        with self._lock:
            try:
                snap = self._snapshot_fn()
                self._render(snap)
            except Exception as exc:
                self._show_error(exc)
            else:
                self._failed = None

    def tick(self) -> None:
        """What the ticker calls: :meth:`refresh` unless paused."""
        if not self.paused:
            self.refresh()

    def _show_error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self._failed != text:  # log each distinct failure once, not every tick
            log.warning("memory dashboard refresh failed: %s", text, exc_info=True)
            self._failed = text
        self.header.value = (
            "<b>Agent memory</b> <span style='color:#c62828'>refresh failed: "
            f"{html.escape(text)}</span>"
        )

    def _render(self, snap: Snapshot) -> None:
        mem, ses = snap.get("memory") or {}, snap.get("sessions") or {}
        now = float(snap.get("time") or time.time())
        status = str(mem.get("status", "ok"))
        if mem.get("rss_bytes") is not None:
            self._history.append((now, int(mem["rss_bytes"]), int(ses.get("estimated_bytes") or 0)))
        top = list(snap.get("top") or [])[: self.top_n]
        leak = bool(mem.get("leak_suspected"))
        with ExitStack() as stack:
            for w in (self, *self._synced):
                stack.enter_context(w.hold_sync())
            colour = _COLOURS.get(status, "#555")
            self.header.value = (
                f"<b>Agent memory</b> · <span style='color:{colour}'><b>{html.escape(status)}"
                f"</b></span> · updated {time.strftime('%H:%M:%S', time.localtime(now))}"
                + (" · paused" if self.paused else "")
            )
            self.bar.value = max(0.0, min(100.0, float(mem.get("usage_pct") or 0.0)))
            self.bar.bar_style = STATUS_STYLE.get(status, "info")
            self.memory_label.value = (
                f"<span class='agentmem-rss'>{html.escape(memory_line(mem))}"
                f"</span><br><small>limit: "
                f"{html.escape(str(mem.get('limit_detail', '')))}</small>"
            )
            self.leak_warning.value = _LEAK_HTML if leak else ""
            self.leak_warning.layout.display = "" if leak else "none"
            self.chart.value = self._chart_html()
            rows = totals_rows(ses)
            if ses.get("last_store_error"):
                rows.append(("store error", str(ses["last_store_error"])))
            if snap.get("guard"):
                rows.append(("memory guard", str(snap["guard"])))
            self.totals.value = html_table(("", ""), rows)
            self.table.value = f"<b>Largest {len(top)} sessions</b>" + html_table(
                SESSION_HEADERS, session_rows(top, now)
            )

    def _chart_html(self) -> str:
        rss = [r for _, r, _ in self._history]
        est = [e for _, _, e in self._history]
        if not rss:
            return ""
        return (
            "<div style='display:flex;gap:24px'>"
            f"<div>{sparkline(rss, '#1565c0')}<br><small>RSS {fmt_bytes(rss[-1])} "
            f"(min {fmt_bytes(min(rss))}, max {fmt_bytes(max(rss))})</small></div>"
            f"<div>{sparkline(est, '#ef6c00')}<br><small>sessions ~{fmt_bytes(est[-1])} "
            f"estimated (max {fmt_bytes(max(est))})</small></div></div>"
        )

    # -------------------------------------------------------------- buttons
    def _run_action(self, label: str, fn: Callable[[], int]) -> None:
        """Button clicks arrive in the kernel thread; the lock keeps the ticker out meanwhile."""
        with self._lock:
            try:
                count = fn()
            except Exception as exc:  # a button must never raise into the comm handler
                error = html.escape(f"{label} failed: {type(exc).__name__}: {exc}")
                self.message.value = f"<span style='color:#c62828'>{error}</span>"
                return
            self.message.value = html.escape(f"{label}: {count} session(s)")
            self.refresh()

    def _on_compact(self, _button: Any = None) -> None:
        if self._actions is not None:
            self._run_action("compacted", self._actions.compact_all)

    def _on_evict(self, _button: Any = None) -> None:
        if self._actions is not None:
            seconds, evict = float(self.idle_seconds.value), self._actions.evict_idle
            self._run_action(f"evicted (idle >= {seconds:g} s)", lambda: evict(seconds))

    def _on_pause(self, _button: Any = None) -> None:
        with self._lock:
            self.paused = not self.paused
            self.pause_button.description = "Resume" if self.paused else "Pause"
            self.refresh()

    def close(self) -> None:
        """Detach from the ticker (the thread stops with the last dashboard), close widgets."""
        ticker, self.ticker = getattr(self, "ticker", None), None
        if ticker is not None:
            ticker.remove(self)
        for child in getattr(self, "_owned", ()):  # absent if __init__ failed half-way
            child.close()
        super().close()


# ------------------------------------------------------------- kernel wiring
def kernel_snapshot(context: KernelContext, top_n: int = 10, detailed: bool = False) -> Snapshot:
    """Build the snapshot from the kernel's real manager and monitor.

    Cost per tick: ``manager.stats()`` (O(1) plus the store's count) and
    ``largest_sessions(top_n)``, a heap selection over the *live* sessions (see
    the benchmark for its cost at 10,000 sessions).
    """
    from .guard import describe_guard

    memory = context.monitor.check(detailed=detailed)
    return {
        "time": time.time(),
        "memory": memory,
        "sessions": context.manager.stats().as_dict(),
        "top": context.manager.largest_sessions(top_n),
        "guard": describe_guard(context),
    }


def open_dashboard(
    context: KernelContext,
    interval: float = 1.0,
    top_n: int = 10,
    detailed: bool = False,
    history: int = 120,
) -> MemoryDashboard:
    """A dashboard on the kernel's manager, refreshed every ``interval`` s by the shared ticker."""
    from .guard import install_notices

    if interval < 0.05:
        raise ValueError(f"interval must be at least 0.05 s, got {interval}")
    install_notices(context)  # warnings logged from the ticker thread go to the next cell
    manager = context.manager
    dash = MemoryDashboard(
        lambda: kernel_snapshot(context, top_n, detailed),
        DashboardActions(manager.compact_all, manager.evict_idle),
        top_n=top_n,
        history=history,
    )
    dash.refresh()
    ticker = ticker_for(context)
    dash.ticker = ticker
    ticker.add(dash, interval)
    return dash


def has_widget_frontend(shell: object) -> bool:
    """True inside a Jupyter kernel; False in terminal IPython or a bare InteractiveShell."""
    if shell is None or type(shell).__name__ == "TerminalInteractiveShell":
        return False
    return getattr(shell, "kernel", None) is not None
