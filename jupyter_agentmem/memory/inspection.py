"""The read-only half of ``SessionManager``: counters, sizes and session tables.

What the dashboard, ``%agent_memory`` and the server's metrics read. Every
method takes the manager's lock only to copy, never while asking the store.
"""

from __future__ import annotations

import time
from typing import Any

from .fields import ManagerFields
from .state import ConversationState
from .stats import ManagerStats, SessionInfo

__all__ = ["Inspection"]


class Inspection(ManagerFields):
    """Stats and listings of a ``SessionManager`` (its attributes, read under its lock)."""

    def stats(self) -> ManagerStats:
        """Counters and sizes; cheap enough for a dashboard tick."""
        with self.lock:
            counters = dict(self._counters)
            live, saving, nbytes = len(self._live), self._saving, self._live.nbytes
            tier = self._tier.stats() if self._tier is not None else None
            error = self.last_store_error
        persisted: int | None = None
        if time.time() >= self._store_down_until:  # do not wait on a store known to be down
            try:
                counter = getattr(self.store, "count", None)
                persisted = counter() if counter is not None else len(self.store.list_ids())
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        return ManagerStats(
            sessions_in_memory=live,
            sessions_saving=saving,
            estimated_bytes=nbytes,
            max_memory_bytes=self.max_memory_bytes,
            max_sessions=self.max_sessions,
            last_store_error=error,
            sessions_persisted=persisted,
            sessions_in_tier=tier["sessions"] if tier else 0,
            tier_bytes=tier["bytes"] if tier else 0,
            max_tier_bytes=tier["max_bytes"] if tier else 0,
            **counters,
        )

    def session_info(self, state: ConversationState) -> SessionInfo:
        """One row of the sessions table."""
        return state.info()

    def largest_sessions(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` largest live sessions (``SessionInfo`` fields); O(n + K), not O(sessions)."""
        with self.lock:
            return [s.info().as_dict() for s in self._live.top(n)]

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every session, live ones first (``SessionInfo`` fields), then those in the
        compressed tier (``in_tier``), then those only in the store (``session_id``
        and ``in_memory``)."""
        with self.lock:
            live = [s.info().as_dict() for s in reversed(self._live.states.values())]
            seen = set(self._live.states)
            tiered = self._tier.ids() if self._tier is not None else []
        held = [{"session_id": sid, "in_memory": False, "in_tier": True} for sid in tiered]
        seen.update(tiered)
        stored = [
            {"session_id": sid, "in_memory": False}
            for sid in self.store.list_ids()
            if sid not in seen
        ]
        return live + held + stored

    def live_ids(self) -> list[str]:
        """Ids of the sessions in memory, least recently used first."""
        with self.lock:
            return list(self._live.states)

    def live_states(self) -> list[ConversationState]:
        """The sessions in memory, least recently used first."""
        with self.lock:
            return list(self._live.states.values())
