"""Process memory measured against the kernel's *real* limit, with a leak trend.

Why this module exists: the widely copied recipe divides RSS by the host's total
RAM.  In a container or on JupyterHub that is the wrong denominator -- the kernel
is OOM-killed at its cgroup limit (or at the operator's ``MEM_LIMIT``, the
jupyter-resource-usage convention) long before the host fills up.  So the limit
is read from the cgroup files, then ``MEM_LIMIT``, then system RAM, and it is
re-read on every check (a few small file reads) so run-time changes count.

It also turns the recipe's prose about leaks into a test: RSS that keeps rising
while the number of sessions stays flat is flagged.

Nothing here prints: checks run from timer threads, so news goes to the module
logger, once per change, and to an optional callback.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import TypedDict

import psutil

logger = logging.getLogger("jupyter_agentmem.watch.monitor")


class MemorySnapshot(TypedDict):
    """One check (JSON-friendly values only); a renamed key fails mypy at every reader."""

    rss_bytes: int
    pss_bytes: int | None  # only with detailed=True (and not on macOS)
    uss_bytes: int | None
    limit_bytes: int
    limit_source: str  # "cgroup" | "MEM_LIMIT" | "mem_limit" | "system"
    limit_detail: str
    usage_pct: float
    status: str  # "ok" | "warning" | "critical"
    sessions: int | None
    leak_suspected: bool
    timestamp: float


Snapshot = MemorySnapshot

_UNLIMITED = 2**60  # cgroup v1 reports "no limit" as ~2**63 rounded to a page
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE | re.ASCII)
_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    # Bare K/M/G and the IEC forms are 1024-based, as in JupyterHub's mem_limit
    # and docker --memory; "KB/MB/GB" are SI (1000-based), as in Kubernetes.
    _UNITS[_letter] = _UNITS[_letter + "i"] = _UNITS[_letter + "ib"] = 1024**_power
    _UNITS[_letter + "b"] = 1000**_power
_bad_env_values: set[str] = set()  # MEM_LIMIT values already warned about


def parse_size(text: str) -> int:
    """Parse a human memory size into bytes: ``"1048576"``, ``"2G"``, ``"300MB"``, ``"1.5GiB"``.

    ``K/M/G/T/P`` (and ``Ki``/``KiB``...) are powers of 1024, like JupyterHub's
    ``mem_limit``; ``KB/MB/GB/TB/PB`` are powers of 1000 (SI).  Case does not
    matter.  Fractions round down to whole bytes.  Raises :class:`ValueError`
    naming the accepted forms for anything else (negative, empty, unknown unit).
    """
    match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"cannot read {text!r} as a memory size: give bytes or a number with a unit, "
            "e.g. 1073741824, 2G, 512M, 300MB, 1.5GiB"
        )
    return int(Fraction(match.group(1)) * _UNITS[unit])  # exact, unlike float or Decimal


@dataclass(frozen=True)
class MemoryLimit:
    """The memory the kernel may really use, and where that number came from."""

    bytes: int
    source: str  # "cgroup" | "MEM_LIMIT" | "mem_limit" | "system"
    detail: str  # the file read, the env var's text, or the psutil call


def _read_small(path: str) -> str:
    """A tiny /proc or /sys file: unbuffered bytes, half the cost of ``Path.read_text``."""
    with open(path, "rb", buffering=0) as f:
        return f.read().decode("utf-8", "replace")


def _read_limit_file(path: str) -> int | None:
    """One cgroup limit file; ``max``, missing, unreadable or garbage all mean "no limit here"."""
    try:
        text = _read_small(path).strip()
        value = None if text == "max" else int(text)
    except (OSError, ValueError):
        return None
    return value if value is not None and 0 < value < _UNLIMITED else None


def _self_and_ancestors(cgroup_path: str) -> list[str]:
    """``/a/b`` -> ``["a/b", "a", ""]``: parents' limits bind the child too."""
    parts = [p for p in cgroup_path.strip().split("/") if p and p != "."]
    if ".." in parts:  # we sit outside our cgroup namespace: only the mount root is visible
        parts = []
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _cgroup_limit(proc_root: str, cgroup_root: str, total: int) -> MemoryLimit | None:
    """Smallest memory limit on this process's cgroup (v2 or v1) and its ancestors."""
    try:
        lines = _read_small(os.path.join(proc_root, "self", "cgroup")).splitlines()
    except OSError:
        return None
    best: MemoryLimit | None = None
    for line in lines:
        fields = line.split(":", 2)  # "hierarchy-id:controllers:path"; the path may hold ':'
        if len(fields) != 3:
            continue
        if fields[0] == "0" and not fields[1]:
            base, name = cgroup_root, "memory.max"  # v2 unified hierarchy
        elif "memory" in fields[1].split(","):
            base, name = os.path.join(cgroup_root, "memory"), "memory.limit_in_bytes"  # v1
        else:
            continue
        # Walking up to the root also covers containers without a cgroup namespace,
        # where the listed path does not exist under the container's own mount.
        for rel in _self_and_ancestors(fields[2]):
            path = os.path.join(base, rel, name)  # str paths: pathlib costs ~30% here
            value = _read_limit_file(path)
            # A limit above physical RAM can never be reached: treat it as unlimited.
            if value is not None and value <= total and (best is None or value < best.bytes):
                best = MemoryLimit(value, "cgroup", path)
    return best


def read_memory_limit(
    environ: Mapping[str, str] | None = None,
    cgroup_root: str = "/sys/fs/cgroup",
    proc_root: str = "/proc",
    *,
    total_memory: int | None = None,
    mem_limit: int = 0,
) -> MemoryLimit:
    """The smallest of the cgroup limit, ``MEM_LIMIT`` and system RAM.

    A user who sets ``MEM_LIMIT`` below the cgroup limit wants the stricter one,
    and neither can exceed physical RAM.  On ties the precedence is cgroup,
    ``MEM_LIMIT``, system.  Unreadable sources fall through quietly; a garbled
    ``MEM_LIMIT`` is logged once per distinct value.  ``environ`` defaults to the
    live ``os.environ``; ``total_memory`` (bytes of RAM) to psutil's reading.
    ``mem_limit`` (bytes, ``AgentMem.mem_limit``), when positive, replaces ``MEM_LIMIT``.
    """
    env = os.environ if environ is None else environ
    total = int(psutil.virtual_memory().total) if total_memory is None else total_memory
    candidates: list[MemoryLimit] = []
    cgroup = _cgroup_limit(proc_root, cgroup_root, total)
    if cgroup is not None:
        candidates.append(cgroup)
    raw = env.get("MEM_LIMIT", "").strip()
    if mem_limit > 0:
        candidates.append(MemoryLimit(mem_limit, "mem_limit", f"AgentMem.mem_limit={mem_limit}"))
    elif raw:
        try:
            value = parse_size(raw)
        except ValueError as exc:
            if raw not in _bad_env_values:
                _bad_env_values.add(raw)
                logger.warning("MEM_LIMIT ignored: %s", exc)
        else:
            if value > 0:  # 0 means "no limit" in jupyter-resource-usage
                candidates.append(MemoryLimit(value, "MEM_LIMIT", f"MEM_LIMIT={raw}"))
    candidates.append(MemoryLimit(total, "system", "psutil.virtual_memory().total"))
    return min(candidates, key=lambda c: c.bytes)  # min() keeps the first of equals


class MemoryMonitor:
    """Samples this process's memory, classifies it against the real limit, spots leaks.

    Thread-safe: a timer thread and the kernel thread may call :meth:`check`
    together.  The lock is never held across psutil or file reads, nor while
    logging or running ``on_status_change`` (which runs in the checking thread,
    so it must be quick).  ``rss_reader`` and the roots exist so tests (and odd
    platforms) can feed their own sources.
    """

    def __init__(
        self,
        warning_pct: float = 75.0,
        critical_pct: float = 90.0,
        history_size: int = 600,
        session_count: Callable[[], int] | None = None,
        leak_window: int = 20,
        leak_min_growth_bytes: int = 32 * 2**20,
        proc_root: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
        environ: Mapping[str, str] | None = None,
        *,
        rss_reader: Callable[[], int] | None = None,
        on_status_change: Callable[[str, str, Snapshot], None] | None = None,
    ) -> None:
        if not 0 < warning_pct < critical_pct <= 100:
            raise ValueError(
                f"need 0 < warning_pct < critical_pct <= 100, got warning_pct={warning_pct}, "
                f"critical_pct={critical_pct}"
            )
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        if not 3 <= leak_window <= history_size:
            raise ValueError(
                f"leak_window must be in 3..history_size ({history_size}), got {leak_window}"
            )
        if leak_min_growth_bytes < 0:
            raise ValueError(f"leak_min_growth_bytes must be >= 0, got {leak_min_growth_bytes}")
        self.warning_pct, self.critical_pct = float(warning_pct), float(critical_pct)
        self._session_count, self._rss_reader = session_count, rss_reader
        self._on_status_change = on_status_change
        self._leak_window, self._leak_min_growth = leak_window, leak_min_growth_bytes
        self._proc_root, self._cgroup_root, self._environ = proc_root, cgroup_root, environ
        self._total_memory = int(psutil.virtual_memory().total)  # RAM size does not change
        self._history: deque[tuple[float, int, int | None]] = deque(maxlen=history_size)
        self._lock = threading.Lock()
        self._process: psutil.Process | None = None
        self._status = "ok"
        self._leak = False
        self._last: Snapshot | None = None
        self.mem_limit = 0  # bytes; > 0 replaces MEM_LIMIT (set live from AgentMem.mem_limit)

    def _proc(self) -> psutil.Process:
        """This process, re-resolved after a fork so a child never reports its parent."""
        proc = self._process
        if proc is None or proc.pid != os.getpid():
            proc = self._process = psutil.Process(os.getpid())
        return proc

    def _detailed(self) -> tuple[int | None, int | None]:
        """PSS and USS from smaps: milliseconds on a big heap, hence opt-in."""
        try:
            info = self._proc().memory_full_info()
        except (psutil.Error, OSError):
            return None, None
        pss, uss = getattr(info, "pss", None), getattr(info, "uss", None)  # no PSS on macOS
        return (None if pss is None else int(pss)), (None if uss is None else int(uss))

    def _sessions(self) -> int | None:
        if self._session_count is None:
            return None
        try:
            return int(self._session_count())
        except Exception:  # a broken counter must not break monitoring
            logger.debug("session_count() failed", exc_info=True)
            return None

    def _leak_trend(self) -> bool:
        """RSS rose steadily over the window while the session count stayed put.

        Steady means: grew by at least ``leak_min_growth_bytes`` end to end, at
        least 75% of steps did not go down, no single step made half the growth
        (one big allocation, such as loading a data frame, is not a leak), and
        the least-squares slope is positive.  Noise and a workload that is merely
        adding sessions both fail.  Called with the lock held.
        """
        n = self._leak_window
        if len(self._history) < n:
            return False
        window = list(self._history)[-n:]
        if len({sessions for _, _, sessions in window}) != 1:
            return False
        rss = [r for _, r, _ in window]
        steps = [b - a for a, b in pairwise(rss)]
        growth = rss[-1] - rss[0]
        if growth < max(self._leak_min_growth, 1) or max(steps) * 2 > growth:
            return False
        if sum(step >= 0 for step in steps) < 0.75 * (n - 1):
            return False
        mean_x, mean_y = (n - 1) / 2, sum(rss) / n
        return sum((i - mean_x) * (y - mean_y) for i, y in enumerate(rss)) > 0

    def check(self, detailed: bool = False) -> Snapshot:
        """Take one sample and return it; ``detailed=True`` adds PSS/USS (slower)."""
        rss = int(self._rss_reader()) if self._rss_reader else int(self._proc().memory_info().rss)
        pss, uss = self._detailed() if detailed else (None, None)
        limit = read_memory_limit(
            self._environ,
            self._cgroup_root,
            self._proc_root,
            total_memory=self._total_memory,
            mem_limit=self.mem_limit,
        )
        sessions = self._sessions()
        pct = 100.0 * rss / limit.bytes
        status = "critical" if pct >= self.critical_pct else "ok"
        if status == "ok" and pct >= self.warning_pct:
            status = "warning"
        with self._lock:
            now = time.time()
            self._history.append((now, rss, sessions))
            leak = self._leak_trend()
            growth = rss - self._history[-self._leak_window][1] if leak else 0
            snap: MemorySnapshot = {
                "rss_bytes": rss,
                "pss_bytes": pss,
                "uss_bytes": uss,
                "limit_bytes": limit.bytes,
                "limit_source": limit.source,
                "limit_detail": limit.detail,
                "usage_pct": round(pct, 2),
                "status": status,
                "sessions": sessions,
                "leak_suspected": leak,
                "timestamp": now,
            }
            old_status, self._status = self._status, status
            was_leak, self._leak = self._leak, leak
            self._last = snap
        if status != old_status:
            self._announce(old_status, status, snap)
        if leak and not was_leak:
            logger.warning(
                "possible memory leak: RSS grew %.1f MiB over the last %d checks while the "
                "session count stayed at %s",
                growth / 2**20,
                self._leak_window,
                sessions,
            )
        elif was_leak and not leak:
            logger.info("memory leak suspicion cleared")
        return snap.copy()

    def _announce(self, old: str, new: str, snap: Snapshot) -> None:
        """Log one line per status change and tell the callback; never raise."""
        level = logging.INFO if new == "ok" else logging.WARNING
        logger.log(
            level,
            "kernel memory %s -> %s: %.1f%% of %.0f MiB (%s)",
            old,
            new,
            snap["usage_pct"],
            snap["limit_bytes"] / 2**20,
            snap["limit_source"],
        )
        if self._on_status_change is not None:
            try:
                self._on_status_change(old, new, snap.copy())
            except Exception:
                logger.exception("on_status_change callback failed (ignored)")

    @property
    def history(self) -> list[tuple[float, int, int | None]]:
        """A copy of the bounded ``(timestamp, rss_bytes, sessions)`` history, oldest first."""
        with self._lock:
            return list(self._history)

    @property
    def status(self) -> str:
        """Status of the last check (``"ok"`` before the first one)."""
        return self._status

    @property
    def last(self) -> Snapshot | None:
        """A copy of the last check, or ``None`` if nothing was checked yet."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    @property
    def leak_suspected(self) -> bool:
        """Whether the last check saw the leak pattern (see :meth:`_leak_trend`)."""
        return self._leak

    def as_dict(self) -> Snapshot:
        """The last check for dashboards and snapshots; checks once if none exists yet."""
        last = self.last
        return last if last is not None else self.check()
