"""The manager's books: which sessions are in memory, in LRU order, and their bytes.

Not locked itself: every call is made with the manager's lock held (the lock
story is in ``owner.py``). Everything here is O(1) per operation except victim
selection, which walks the LRU order only as far as it must.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from .state import ConversationState
from .stats import LargestSessions


def _size_of(state: ConversationState) -> int:
    return state.memory_estimate_bytes


@dataclass(frozen=True)
class Budget:
    max_sessions: int
    max_bytes: int
    idle_timeout: float | None


class LiveSessions:
    """Live sessions (least recently used first) with an incremental byte total."""

    def __init__(self) -> None:
        self.states: OrderedDict[str, ConversationState] = OrderedDict()
        self.nbytes = 0
        self.largest: LargestSessions[ConversationState] = LargestSessions(_size_of)
        self.backoff: dict[str, float] = {}  # per-document save failures: retry after
        # The last session in the LRU order when known (None: look it up), so the
        # resizes of the session in use (every add) skip the reordering.
        self.newest: ConversationState | None = None

    def __len__(self) -> int:
        return len(self.states)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self.states

    def get(self, sid: str) -> ConversationState | None:
        return self.states.get(sid)

    def add(self, state: ConversationState) -> None:
        sid = state.session_id
        fresh = sid not in self.states
        self.states[sid] = state  # a new key goes last; a replaced one keeps its place
        self.newest = state if fresh else None
        size = state.memory_estimate_bytes
        self.nbytes += size
        self.largest.consider(sid, state, size)

    def remove(self, sid: str) -> ConversationState | None:
        state = self.states.pop(sid, None)
        if state is not None:
            self.nbytes -= state.memory_estimate_bytes
            if state is self.newest:
                self.newest = None
        self.largest.discard(sid)
        self.backoff.pop(sid, None)
        return state

    def touch(self, sid: str) -> ConversationState | None:
        """Mark a session used now (most recent); None if it is not live."""
        state = self.states.get(sid)
        if state is not None:
            self.states.move_to_end(sid)
            self.newest = state
            state.last_access = time.time()
        return state

    def resized(self, state: ConversationState, delta: int, size: int) -> None:
        """``state`` changed by ``delta`` bytes to ``size`` (passed in: every add resizes,
        and reading it back through the property would cost a call)."""
        sid = state.session_id
        if state is not self.newest:  # else live and last already
            states = self.states
            if states.get(sid) is not state:
                return
            states.move_to_end(sid)
            self.newest = state
        self.nbytes += delta
        largest = self.largest
        if size <= largest.floor or largest.members.get(sid) is not state:
            largest.consider(sid, state, size)  # else a candidate staying one: no-op

    def in_use(self) -> str | None:
        """The most recently used session: never evicted to make room."""
        return next(reversed(self.states), None)

    def oldest_is_idle(self, idle_timeout: float) -> bool:
        oldest = next(iter(self.states.values()), None)
        return oldest is not None and oldest.last_access <= time.time() - idle_timeout

    def victims(self, force: Iterable[str], budget: Budget) -> tuple[list[ConversationState], int]:
        """Forced, idle, then LRU sessions until the budgets would hold, skipping the
        session in use and those backing off. Returns them and the bytes that stay."""
        now = time.time()
        states = self.states
        chosen = {sid: states[sid] for sid in force if sid in states}
        if budget.idle_timeout is not None:
            horizon = now - budget.idle_timeout
            for sid, state in states.items():
                if state.last_access > horizon:
                    break
                chosen.setdefault(sid, state)
        count = len(states) - len(chosen)
        nbytes = self.nbytes - sum(s.memory_estimate_bytes for s in chosen.values())
        in_use = self.in_use()
        for sid, state in states.items():
            if sid == in_use or (count <= budget.max_sessions and nbytes <= budget.max_bytes):
                break
            if sid not in chosen and self.backoff.get(sid, 0.0) <= now:
                chosen[sid] = state
                count -= 1
                nbytes -= state.memory_estimate_bytes
        return list(chosen.values()), nbytes

    def top(self, n: int) -> list[ConversationState]:
        return self.largest.top(n, self.states)
