"""Watching memory over time: the per-cell delta (``%agent_memory watch``) and the
shared refresh thread of the dashboards.

Both live in the kernel for as long as the user wants them and no longer: each
one registers a closer with the kernel context, so ``%unload_ext`` removes the
``pre/post_run_cell`` hooks and ends the threads.  Both use *threads*, because
an asyncio task in the kernel loop freezes while a cell runs, and neither ever
prints from a thread: the per-cell line is printed by ``post_run_cell``, which
runs in the kernel thread at the end of the cell it describes.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from jupyter_agentmem.units import MIN_INTERVAL_SECONDS, MiB

from .host import Resources


# ----------------------------------------------------------- dashboard ticker
class Tickable(Protocol):
    """What the ticker needs from a dashboard (kept abstract: no widget import here)."""

    comm: Any

    def tick(self) -> None: ...
    def close(self) -> None: ...


class DashboardTicker:
    """One daemon thread refreshing every open dashboard of a kernel.

    The thread starts with the first dashboard and ends by itself when the last
    one is removed; each dashboard keeps its own interval.  At most
    ``max_dashboards`` stay registered: re-running a ``%agent_memory`` cell
    leaves the old, no longer visible widget alive, so the oldest is closed.
    """

    THREAD_NAME = "agentmem-dashboard"

    def __init__(self, max_dashboards: int = 8) -> None:
        self.max_dashboards = max_dashboards
        self._lock = threading.Lock()
        self._due: dict[Tickable, list[float]] = {}  # dashboard -> [interval, next due]
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, dashboard: Tickable, interval: float = 1.0) -> None:
        """Call ``dashboard.tick()`` every ``interval`` seconds (>= 0.05) from the thread."""
        if interval < MIN_INTERVAL_SECONDS:
            raise ValueError(f"interval must be at least {MIN_INTERVAL_SECONDS} s, got {interval}")
        with self._lock:
            self._due[dashboard] = [interval, time.monotonic() + interval]
            oldest = next(iter(self._due)) if len(self._due) > self.max_dashboards else None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=self.THREAD_NAME, daemon=True
                )
                self._thread.start()
        self._wake.set()
        if oldest is not None:
            oldest.close()  # its close() calls remove()
            self.remove(oldest)

    def remove(self, dashboard: Tickable) -> None:
        """Stop refreshing ``dashboard``; with none left, wait for the thread to end."""
        with self._lock:
            self._due.pop(dashboard, None)
            thread = self._thread if not self._due else None
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    @property
    def dashboards(self) -> list[Tickable]:
        """The registered dashboards, oldest first."""
        with self._lock:
            return list(self._due)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def close(self) -> None:
        """Close every dashboard (unload / kernel shutdown) and end the thread."""
        for dash in self.dashboards:
            dash.close()
        with self._lock:
            self._due.clear()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._due:
                    self._thread = None
                    return
                now = time.monotonic()
                ready = [d for d, (_, due) in self._due.items() if due <= now]
                for d in ready:
                    self._due[d][1] = now + self._due[d][0]
                wait = min(due for _, due in self._due.values()) - now
                self._wake.clear()
            for dash in ready:
                if dash.comm is None:  # closed behind our back, e.g. Widget.close_all()
                    self.remove(dash)
                else:
                    dash.tick()  # never raises: a dashboard shows its own errors
            self._wake.wait(max(0.0, wait))


def ticker_for(host: Resources) -> DashboardTicker:
    """The kernel's shared ticker, created on first use and closed with the context."""
    return host.resource("memory dashboards", DashboardTicker, DashboardTicker.close)


# ------------------------------------------------------------ per-cell watch
@dataclass(frozen=True)
class CellMemory:
    """Memory change over one cell, in bytes (``peak_delta``: highest sample minus before)."""

    execution_count: int | None
    rss_before: int
    rss_after: int
    delta: int
    peak_delta: int
    seconds: float
    timestamp: float


_HISTORY: deque[CellMemory] = deque(maxlen=500)


def history() -> list[dict[str, Any]]:
    """Per-cell records of ``%agent_memory watch``, oldest first (the last 500 cells)."""
    return [asdict(r) for r in list(_HISTORY)]


def clear_history() -> None:
    _HISTORY.clear()


def _current_rss() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


class CellWatcher:
    """``pre/post_run_cell`` hooks printing the RSS change of each cell, with its peak.

    A cell that allocates 2 GB and frees it shows a zero delta, so a sampler
    thread (``sample_interval`` s) records the peak while a cell runs; it idles
    on an event between cells.  Records go to :func:`history`.
    """

    THREAD_NAME = "agentmem-watch"

    def __init__(
        self,
        shell: Any,
        rss_reader: Callable[[], int] | None = None,
        sample_interval: float = MIN_INTERVAL_SECONDS,
        echo: bool = True,
    ) -> None:
        self.shell, self.echo = shell, echo
        self._rss = rss_reader or _current_rss
        self._interval = sample_interval
        self._running = threading.Event()  # set while a cell runs
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._before: tuple[int, float] | None = None
        self._peak = 0
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.shell.events.register("pre_run_cell", self._pre)
        self.shell.events.register("post_run_cell", self._post)
        self._thread = threading.Thread(target=self._sample, name=self.THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Remove the hooks and end the sampler; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        for event, fn in (("pre_run_cell", self._pre), ("post_run_cell", self._post)):
            if fn in self.shell.events.callbacks[event]:
                self.shell.events.unregister(event, fn)
        self._stop.set()
        self._running.set()
        thread.join(timeout=5)
        self._running.clear()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.wait(self._interval):
                return
            try:
                rss = self._rss()
            except Exception:  # a failing reader only loses the peak, never the cell
                continue
            with self._lock:
                self._peak = max(self._peak, rss)

    def _pre(self, info: Any = None) -> None:
        try:
            rss = self._rss()
        except Exception:
            self._before = None
            return
        with self._lock:
            self._before, self._peak = (rss, time.perf_counter()), rss
        self._running.set()

    def _post(self, result: Any = None) -> None:
        self._running.clear()
        before, self._before = self._before, None
        if before is None:  # e.g. the cell that ran "watch on"
            return
        try:
            after = self._rss()
        except Exception:
            return
        with self._lock:
            peak = max(self._peak, after)
        record = CellMemory(
            getattr(result, "execution_count", None),
            before[0],
            after,
            after - before[0],
            peak - before[0],
            time.perf_counter() - before[1],
            time.time(),
        )
        _HISTORY.append(record)
        if self.echo:
            print(describe(record))  # kernel thread, inside the cell it describes


def describe(r: CellMemory) -> str:
    """``In [5]: +12.3 MiB (RSS 245.1 MiB, peak +40.2 MiB, 0.52 s)``."""
    cell = f"In [{r.execution_count}]" if r.execution_count is not None else "cell"
    return (
        f"agent_memory watch: {cell}: {r.delta / MiB:+.1f} MiB (RSS {r.rss_after / MiB:.1f}"
        f" MiB, peak {r.peak_delta / MiB:+.1f} MiB, {r.seconds:.2f} s)"
    )


_WATCH = "per-cell memory watch"


def set_watch(host: Resources, on: bool, shell: Any = None) -> CellWatcher | None:
    """Turn the per-cell watch on or off for the kernel; returns the active watcher."""
    if not on:
        host.release(_WATCH)
        return None

    def create() -> CellWatcher:
        target = shell if shell is not None else host.shell
        if target is None:
            raise RuntimeError("the per-cell watch needs an IPython shell")
        watcher = CellWatcher(target)
        watcher.start()
        return watcher

    return host.resource(_WATCH, create, CellWatcher.stop)


def get_watcher(host: Resources) -> CellWatcher | None:
    watcher: CellWatcher | None = host.find(_WATCH)
    return watcher
