"""What the watch side needs from its host, as Protocols (so watch/ never imports notebook/).

The notebook's ``KernelContext`` satisfies these structurally; tests and other
faces can pass anything with the same shape. Read-only properties keep the
protocols covariant (a context whose ``manager`` is a ``SessionManager`` fits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from jupyter_agentmem.memory.stats import ManagerStats

from .monitor import MemorySnapshot

T = TypeVar("T")


class Monitor(Protocol):
    """A memory monitor (``MemoryMonitor``): one sample per call."""

    def check(self, detailed: bool = False) -> MemorySnapshot: ...


class Manager(Protocol):
    """The parts of a ``SessionManager`` the guard and the dashboard use."""

    def live_ids(self) -> list[str]: ...
    def evict(self, session_id: str) -> bool: ...
    def stats(self) -> ManagerStats: ...
    def largest_sessions(self, n: int = 10) -> list[dict[str, Any]]: ...
    def compact_all(self) -> int: ...
    def evict_idle(self, seconds: float | None = None) -> int: ...


class GuardSettings(Protocol):
    """Live settings the guard re-reads on every check (``AgentMem``)."""

    @property
    def memory_guard(self) -> bool: ...
    @property
    def guard_interval(self) -> float: ...


class Resources(Protocol):
    """A owner of named, closable resources (threads, hooks) bound to one kernel."""

    @property
    def shell(self) -> Any: ...

    def resource(
        self,
        name: str,
        factory: Callable[[], T],
        close: Callable[[T], None],
        alive: Callable[[T], bool] | None = None,
    ) -> T: ...

    def find(self, name: str) -> Any | None: ...
    def release(self, name: str) -> bool: ...


class Host(Resources, Protocol):
    """A kernel host: resources plus the monitor, the manager and the settings."""

    @property
    def monitor(self) -> Monitor: ...
    @property
    def manager(self) -> Manager: ...
    @property
    def config(self) -> GuardSettings: ...
