"""Live ipywidgets view of the kernel's memory and sessions (``%agent_memory``).

Why it is built this way: the view gets all its data from an injected
``snapshot()`` callable returning a :class:`~.snapshot.KernelSnapshot`, so it is
tested with a fake dict and no psutil; it builds its widgets once and updates
them under ``hold_sync`` (one message per changed widget per refresh, never one
per trait); and it is refreshed by one shared daemon *thread* per kernel,
because an asyncio task in the kernel loop freezes while another cell runs --
exactly when a memory view matters most. Nothing here prints: a failing
snapshot is logged once and shown in the view. The only module of the package
that imports ipywidgets.
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
from typing import Any

import ipywidgets as widgets

from jupyter_agentmem.units import MIN_INTERVAL_SECONDS, human_bytes

from .guard import install_notices
from .host import Host
from .snapshot import (
    SESSION_HEADERS,
    KernelSnapshot,
    format_text,
    has_widget_frontend,
    html_table,
    kernel_snapshot,
    memory_line,
    session_rows,
    totals_rows,
)
from .ticker import DashboardTicker, ticker_for

__all__ = [
    "DashboardActions",
    "MemoryDashboard",
    "format_text",
    "has_widget_frontend",
    "kernel_snapshot",
    "open_dashboard",
]

log = logging.getLogger(__name__)

Snapshot = KernelSnapshot
STATUS_STYLE = {"ok": "success", "warning": "warning", "critical": "danger"}
_COLOURS = {"ok": "#2e7d32", "warning": "#ef6c00", "critical": "#c62828"}


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
        self._make_widgets(enabled=actions is not None)
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

    def _make_widgets(self, enabled: bool) -> None:
        """The status widgets and the controls (the action buttons only ``enabled``
        when the dashboard has actions to run)."""
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
        self.compact_button = widgets.Button(description="Compact all", disabled=not enabled)
        self.idle_seconds = widgets.BoundedFloatText(
            value=300.0,
            min=0.0,
            max=1e9,
            description="idle s",
            layout=widgets.Layout(width="170px"),
        )
        self.evict_button = widgets.Button(description="Evict idle", disabled=not enabled)
        self.pause_button = widgets.Button(description="Pause")
        self.message = widgets.HTML()

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
        mem, ses, now = snap["memory"], snap["sessions"], snap["time"]
        status = mem["status"]
        self._history.append((now, mem["rss_bytes"], ses["estimated_bytes"]))
        top = snap["top"][: self.top_n]
        leak = mem["leak_suspected"]
        with ExitStack() as stack:
            for w in (self, *self._synced):
                stack.enter_context(w.hold_sync())
            colour = _COLOURS.get(status, "#555")
            self.header.value = (
                f"<b>Agent memory</b> · <span style='color:{colour}'><b>{html.escape(status)}"
                f"</b></span> · updated {time.strftime('%H:%M:%S', time.localtime(now))}"
                + (" · paused" if self.paused else "")
            )
            self.bar.value = max(0.0, min(100.0, float(mem["usage_pct"])))
            self.bar.bar_style = STATUS_STYLE.get(status, "info")
            self.memory_label.value = (
                f"<span class='agentmem-rss'>{html.escape(memory_line(mem))}"
                f"</span><br><small>limit: "
                f"{html.escape(mem['limit_detail'])}</small>"
            )
            self.leak_warning.value = _LEAK_HTML if leak else ""
            self.leak_warning.layout.display = "" if leak else "none"
            self.chart.value = self._chart_html()
            rows = totals_rows(ses)
            if ses["last_store_error"]:
                rows.append(("store error", ses["last_store_error"]))
            if snap["guard"]:
                rows.append(("memory guard", snap["guard"]))
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
            f"<div>{sparkline(rss, '#1565c0')}<br><small>RSS {human_bytes(rss[-1])} "
            f"(min {human_bytes(min(rss))}, max {human_bytes(max(rss))})</small></div>"
            f"<div>{sparkline(est, '#ef6c00')}<br><small>sessions ~{human_bytes(est[-1])} "
            f"estimated (max {human_bytes(max(est))})</small></div></div>"
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
def open_dashboard(
    host: Host,
    interval: float = 1.0,
    top_n: int = 10,
    detailed: bool = False,
    history: int = 120,
) -> MemoryDashboard:
    """A dashboard on the kernel's manager, refreshed every ``interval`` s by the shared ticker."""
    if interval < MIN_INTERVAL_SECONDS:
        raise ValueError(f"interval must be at least {MIN_INTERVAL_SECONDS} s, got {interval}")
    install_notices(host)  # warnings logged from the ticker thread go to the next cell
    manager = host.manager
    dash = MemoryDashboard(
        lambda: kernel_snapshot(host, top_n, detailed),
        DashboardActions(manager.compact_all, manager.evict_idle),
        top_n=top_n,
        history=history,
    )
    dash.refresh()
    ticker = ticker_for(host)
    dash.ticker = ticker
    ticker.add(dash, interval)
    return dash
