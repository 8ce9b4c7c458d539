"""Several processes sharing one store: drop a live copy another writer superseded.

The ``SessionManager`` half that lets servers share sessions without sticky
routing (see :meth:`Sharing.refresh`); counted in ``SessionManager.sharing``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .fields import ManagerFields

__all__ = ["Sharing"]


class Sharing(ManagerFields):
    """``refresh`` / ``arefresh``: reload a session when the store holds a newer revision."""

    sharing: dict[str, int]

    if TYPE_CHECKING:  # provided by SessionManager

        def evict(self, session_id: str) -> bool: ...

    def refresh(self, session_id: str) -> bool:
        """Drop a live copy that another process has superseded; True if it did.

        One cheap store call (``store.revision``, when the store has it) per turn
        lets several servers share sessions without sticky routing: when the
        stored revision is newer than ours, unsaved turns of ours are saved
        first (merged after the other writer's, as on any conflict), then the
        copy is unloaded so the next use loads the stored one.
        """
        read = getattr(self.store, "revision", None)
        with self.lock:
            state = self._live.get(session_id)
            if read is None or state is None:
                return False
            mine, version = state.revision, state.version
            unsaved = state.messages_total != state.base_total
        stored = read(session_id)
        if stored is None or stored <= mine:
            return False
        if unsaved:  # save ours merged after theirs; a failed save keeps the copy live
            dropped = self.evict(session_id)
        else:
            with self.lock:
                dropped = self._live.get(session_id) is state and state.version == version
                if dropped:
                    self._live.remove(session_id)
                    state.unload()
        if dropped:
            with self.lock:
                self.sharing["stale_reloads"] += 1
        return dropped

    async def arefresh(self, session_id: str) -> bool:
        """Async twin of :meth:`refresh` (the store call runs in a worker thread)."""
        return await asyncio.to_thread(self.refresh, session_id)
