"""The attributes of a ``SessionManager``, declared once for all its mixins.

``SessionManager.__init__`` sets them; :mod:`.eviction`, :mod:`.tiering`,
:mod:`.inspection` and :mod:`.durable` read and write them. Declaring them here
(types only, no behaviour) lets ``mypy --strict`` check each mixin on its own.
"""

from __future__ import annotations

import threading

from jupyter_agentmem.stores.base import SessionStore

from .books import LiveSessions
from .journal import Journal
from .policy import StatePolicy
from .tier import CompressedTier

__all__ = ["ManagerFields"]


class ManagerFields:
    """Type declarations of the manager's state; see ``SessionManager.__init__``."""

    store: SessionStore
    policy: StatePolicy
    lock: threading.RLock
    max_sessions: int
    max_memory_bytes: int
    idle_timeout: float | None
    retry_after: float
    last_store_error: str | None
    durable_turns: bool | None
    journal: Journal | None
    _io_lock: threading.Lock
    _live: LiveSessions
    _counters: dict[str, int]
    _saving: int
    _deletions: int
    _oversize_warned: bool
    _store_down_until: float
    _closed: bool
    _writer: str | None
    _tier: CompressedTier | None
    _spilling: set[str]
