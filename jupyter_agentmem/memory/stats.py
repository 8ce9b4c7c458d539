"""Typed snapshots of the memory engine (what dashboards and magics read), and the
incremental ranking of the largest sessions."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class SessionInfo:
    """One row of the sessions table."""

    session_id: str
    in_memory: bool
    messages: int | None  #: recent (not yet summarised) messages; None while evicted
    summary_chars: int
    messages_total: int  #: every message ever added
    turns: int  #: user messages among them
    compactions: int
    estimated_bytes: int
    last_access: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ManagerStats:
    """Counters and sizes of a SessionManager at one moment.

    The counters are true totals since the manager was created.
    ``sessions_persisted`` is None when the store could not be asked.
    """

    sessions_in_memory: int
    sessions_saving: int  #: sessions with a store write in flight
    estimated_bytes: int
    max_memory_bytes: int
    max_sessions: int
    evictions: int
    restores: int
    compactions: int
    truncated_chars_saved: int
    persist_failures: int
    conflicts_merged: int
    oversized_sessions: int  #: times one session alone was over the byte budget
    last_store_error: str | None
    sessions_persisted: int | None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (for JSON output and the dashboard's snapshot)."""
        return dataclasses.asdict(self)


#: The counters a manager keeps (ManagerStats fields that are plain running totals).
COUNTERS = (
    "evictions",
    "restores",
    "compactions",
    "truncated_chars_saved",
    "persist_failures",
    "conflicts_merged",
    "oversized_sessions",
)

T = TypeVar("T")


class LargestSessions(Generic[T]):
    """The largest live sessions, kept incrementally so a dashboard tick is O(K), not O(n).

    Invariant: every live session that is not a candidate has at most ``floor``
    bytes. A session that grows past the floor becomes a candidate (O(1)); the
    candidates are trimmed back to ``K`` when they reach ``2K``, raising the
    floor. Only when fewer candidates remain than asked for is there a full scan.
    """

    K = 64

    def __init__(self, size_of: Callable[[T], int]) -> None:
        self.members: dict[str, T] = {}
        self.floor = 0
        self.size_of = size_of

    def consider(self, sid: str, state: T, size: int) -> None:
        """``state`` (of ``size`` bytes) changed: O(1) unless the candidates are trimmed."""
        if size > self.floor:
            self.members[sid] = state
            if len(self.members) >= 2 * self.K:
                kept = heapq.nlargest(self.K, self.members.items(), key=self._key)
                self.members = dict(kept)
                self.floor = max(self.floor, self.size_of(kept[-1][1]))
        elif sid in self.members:
            del self.members[sid]  # shrank below the floor: the invariant holds

    def discard(self, session_id: str) -> None:
        self.members.pop(session_id, None)

    def top(self, n: int, live: Mapping[str, T]) -> list[T]:
        members = [(sid, s) for sid, s in self.members.items() if live.get(sid) is s]
        if len(members) < min(n, len(live)):
            kept = heapq.nlargest(max(n, self.K), live.items(), key=self._key)
            self.members = dict(kept)
            self.floor = self.size_of(kept[-1][1]) if len(live) > len(kept) else 0
            members = kept
        return [s for _, s in heapq.nlargest(n, members, key=self._key)]

    def _key(self, item: tuple[str, T]) -> int:
        return self.size_of(item[1])
