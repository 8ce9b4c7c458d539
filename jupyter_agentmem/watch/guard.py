"""Memory-pressure protection: evict agent sessions before the kernel is OOM-killed.

Why a thread: the kernel is most at risk while a long cell runs, when an
asyncio task would be frozen.  Why the notice waits for the cell to end: on
ipykernel 7 anything a background thread prints lands in whatever cell happens
to run.  So the guard (and any ``jupyter_agentmem`` warning logged from a
background thread, such as the monitor's status changes) queues a message in
:class:`Notices`, which shows it from ``post_run_cell`` in the kernel thread.

The limit is re-read on every check (``MemoryMonitor`` does it), so setting
``MEM_LIMIT`` or the ``mem_limit`` setting (``%agent_memory limits --mem-limit``)
takes effect at the next check, with or without a dashboard open.
"""

from __future__ import annotations

import ctypes
import gc
import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

from jupyter_agentmem.units import MIN_INTERVAL_SECONDS, human_bytes

from .host import GuardSettings, Host, Manager, Monitor, Resources
from .monitor import MemorySnapshot

log = logging.getLogger(__name__)
PACKAGE_LOGGER = "jupyter_agentmem"


# -------------------------------------------------------------------- notices
class _ThreadLogHandler(logging.Handler):
    """Routes package warnings logged from background threads to the notice queue.

    Records from the kernel (main) thread are left alone: when no handler is
    configured they go to ``logging.lastResort`` exactly as before.  Pending
    records of the same kind (logger and format string) keep only the latest,
    so "memory ok -> critical -> warning" shows one line, not three.
    """

    def __init__(self, notices: Notices) -> None:
        super().__init__(logging.WARNING)
        self.notices = notices

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is threading.main_thread():
            last = logging.lastResort
            if not logging.getLogger().handlers and last and record.levelno >= last.level:
                last.handle(record)
            return
        text = f"jupyter-agentmem {record.levelname.lower()}: {record.getMessage()}"
        self.notices.post(text, key=f"{record.name}:{record.msg}")  # latest of each kind


class Notices:
    """A small queue of messages from background threads, shown at the end of a cell.

    ``post(text, key)`` replaces a pending message with the same key, so a
    condition repeated every check is shown once; at most ``maxlen`` wait.
    """

    def __init__(self, shell: Any, maxlen: int = 20) -> None:
        self.shell = shell
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._maxlen = maxlen
        self.generation = 0  # bumped by every flush that showed something
        self.shown: deque[str] = deque(maxlen=50)
        self._handler = _ThreadLogHandler(self)
        self._installed = False

    def post(self, text: str, key: str | None = None) -> None:
        with self._lock:
            self._pending.pop(key or text, None)
            if len(self._pending) < self._maxlen:
                self._pending[key or text] = text

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._pending.values())

    def flush(self, *_args: Any) -> list[str]:
        """Show the pending messages (``post_run_cell``: kernel thread); never raises."""
        with self._lock:
            messages = list(self._pending.values())
            self._pending.clear()
            if messages:
                self.generation += 1
        for text in messages:
            self.shown.append(text)
            try:
                from IPython import display as ipython_display

                display = cast(Callable[..., None], ipython_display.display)
                body = html.escape(text)
                display(
                    {
                        "text/plain": text,
                        "text/html": "<div style='border-left:4px solid "
                        f"#ef6c00;padding:2px 8px;background:#fff3e0'>{body}</div>",
                    },
                    raw=True,
                )
            except Exception:  # a notice must never break a cell
                log.debug("could not display a notice", exc_info=True)
        return messages

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        if self.shell is not None:
            self.shell.events.register("post_run_cell", self.flush)
        logging.getLogger(PACKAGE_LOGGER).addHandler(self._handler)

    def close(self) -> None:
        if not self._installed:
            return
        self._installed = False
        logging.getLogger(PACKAGE_LOGGER).removeHandler(self._handler)
        if self.shell is not None and self.flush in self.shell.events.callbacks["post_run_cell"]:
            self.shell.events.unregister("post_run_cell", self.flush)


def install_notices(host: Resources) -> Notices:
    """The kernel's notice queue (idempotent); removed again at unload."""

    def create() -> Notices:
        notices = Notices(host.shell)
        notices.install()
        return notices

    return host.resource("notices", create, Notices.close)


# ---------------------------------------------------------------------- guard
@dataclass(frozen=True)
class GuardReport:
    """What one relief did."""

    time: float
    pct_before: float
    pct_after: float
    status_after: str
    limit_bytes: int
    limit_source: str
    evicted: int
    estimated_freed: int
    left_in_memory: int


_trim: Any = None


def release_memory(collect: bool = True) -> None:
    """``gc.collect()`` (when ``collect``), then glibc ``malloc_trim(0)`` so freed heap pages
    go back to the OS; otherwise RSS may not drop after the sessions are gone.  A full
    collection can take long on a big heap, so the guard asks for it once per relief."""
    global _trim
    if collect:
        gc.collect()
    if _trim is None:
        try:
            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


class MemoryGuard:
    """Checks memory every ``interval`` s; at ``critical`` evicts LRU sessions to the store.

    Eviction goes least recently used first, in growing batches (4, 8, 16...),
    re-checking after each batch, and stops once the status is back to ``ok``
    (under the warning level) or no session is left in memory.  ``notify(key,
    text)`` receives one message per relief; repeated "nothing left to evict"
    conditions are reported once per critical episode.
    """

    THREAD_NAME = "agentmem-guard"

    def __init__(
        self,
        monitor: Monitor,
        manager: Manager,
        *,
        interval: float = 2.0,
        config: GuardSettings | None = None,
        notify: Callable[[str, str], None] | None = None,
        release: Callable[[bool], None] = release_memory,
        first_batch: int = 4,
    ) -> None:
        self.monitor, self.manager, self.config = monitor, manager, config
        self._interval, self._notify, self._release = interval, notify, release
        self.first_batch = max(1, first_batch)
        self.reports: deque[GuardReport] = deque(maxlen=20)
        self._evicted_total = 0  # every report's evictions, not only the last 20
        self.checks = 0
        self._episode: GuardReport | None = None  # what this critical period did so far
        self._told_empty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.memory_guard) if self.config is not None else True

    @property
    def interval(self) -> float:
        value = self.config.guard_interval if self.config is not None else self._interval
        return max(MIN_INTERVAL_SECONDS, float(value))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def evicted_total(self) -> int:
        """Sessions evicted by this guard since it started (a true total)."""
        return self._evicted_total

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.THREAD_NAME, daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (unload / shutdown); idempotent."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
                self._failed = None
            except Exception as exc:  # keep guarding; say so once per distinct failure
                text = f"{type(exc).__name__}: {exc}"
                if text != self._failed:
                    self._failed = text
                    log.warning("memory guard check failed: %s", text)

    def check_once(self) -> GuardReport | None:
        """One check; relieves the pressure when the status is critical."""
        if not self.enabled:
            return None
        snap = self.monitor.check()
        self.checks += 1
        if snap["status"] != "critical":
            self._episode, self._told_empty = None, False
            return None
        return self.relieve(snap)

    def relieve(self, snap: MemorySnapshot) -> GuardReport | None:
        """Evict LRU sessions until memory is back under the warning level."""
        ids = self.manager.live_ids()
        if not ids:
            if not self._told_empty:
                self._told_empty = True
                self._tell("guard-empty", _empty_text(snap))
            return None
        before = self.manager.stats().estimated_bytes
        evicted, done, batch, after = 0, 0, self.first_batch, snap
        while done < len(ids):
            chosen = ids[done : done + batch]
            for sid in chosen:
                try:
                    self.manager.evict(sid)
                except Exception:  # a store failure keeps that session; try the next
                    log.debug("guard could not evict %r", sid, exc_info=True)
            live = set(self.manager.live_ids())  # count what really left memory
            evicted += sum(sid not in live for sid in chosen)
            self._release(done == 0)  # gc.collect() after the first batch only
            done, batch = done + batch, batch * 2
            after = self.monitor.check()
            if after["status"] == "ok":
                break
        stats = self.manager.stats()
        report = GuardReport(
            time.time(),
            float(snap["usage_pct"]),
            float(after["usage_pct"]),
            after["status"],
            int(snap["limit_bytes"]),
            snap["limit_source"],
            evicted,
            max(0, before - stats.estimated_bytes),
            stats.sessions_in_memory,
        )
        self._evicted_total += evicted
        log.info("memory guard: %s", report)
        if evicted:
            self._tell_episode(report)
        self.reports.append(report)  # last: whoever sees the report finds its notice posted
        return report

    def _tell_episode(self, report: GuardReport) -> None:
        """One message per critical period: a pending one is replaced, not added."""
        ep = self._episode
        self._episode = (
            report
            if ep is None
            else replace(
                report,
                pct_before=ep.pct_before,
                evicted=ep.evicted + report.evicted,
                estimated_freed=ep.estimated_freed + report.estimated_freed,
            )
        )
        self._tell("guard", report_text(self._episode))

    def _tell(self, key: str, text: str) -> None:
        if self._notify is not None:
            self._notify(key, text)
        else:
            log.warning("%s", text)


def report_text(r: GuardReport) -> str:
    """The one message the user sees for a relief."""
    text = (
        f"Memory guard: kernel memory reached {r.pct_before:.0f}% of "
        f"{human_bytes(r.limit_bytes, 0)} ({r.limit_source}); evicted {r.evicted} "
        "least-recently-used agent session(s) "
        f"(~{human_bytes(r.estimated_freed, 0)} estimated) to the store; they are restored "
        f"automatically when used. Now {r.pct_after:.0f}%."
    )
    if r.status_after == "critical":
        text += " Still critical: free large objects (del ...) or raise the limit."
    return text


def _empty_text(snap: MemorySnapshot) -> str:
    return (
        f"Memory guard: kernel memory is at {snap['usage_pct']:.0f}% of "
        f"{human_bytes(snap['limit_bytes'], 0)} ({snap['limit_source']}) and no "
        "agent session is left in memory to evict: free large objects (del df; "
        "gc.collect()) or raise the limit."
    )


def install_guard(host: Host) -> MemoryGuard:
    """Start the kernel's memory guard (idempotent); it stops when the extension unloads."""
    notices = install_notices(host)

    def create() -> MemoryGuard:
        guard = MemoryGuard(
            host.monitor,
            host.manager,
            config=host.config,
            notify=lambda key, text: notices.post(text, key),
        )
        guard.start()
        return guard

    return host.resource("memory guard", create, MemoryGuard.close, lambda g: g.alive)


def get_guard(host: Resources) -> MemoryGuard | None:
    guard: MemoryGuard | None = host.find("memory guard")
    return guard


def describe_guard(host: Resources) -> str:
    """One line for the dashboard and ``stats``: off, on, and what it last did."""
    guard = get_guard(host)
    if guard is None or not guard.alive:
        return "memory guard: not running (install_guard / memory_guard=True)"
    if not guard.enabled:
        return "memory guard: disabled (memory_guard=False)"
    last = guard.reports[-1] if guard.reports else None
    line = f"memory guard: on, every {guard.interval:g} s"
    if last is not None:
        line += (
            f"; evicted {guard.evicted_total} session(s), last at "
            f"{time.strftime('%H:%M:%S', time.localtime(last.time))} "
            f"({last.pct_before:.0f}% -> {last.pct_after:.0f}%)"
        )
    return line
