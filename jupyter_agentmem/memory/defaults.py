"""The memory engine's defaults, in one place.

``StatePolicy``, ``SessionManager`` and the ``AgentMem`` settings all read these,
so changing a default is a one-line change here.
"""

from __future__ import annotations

from jupyter_agentmem.units import MIN_MEMORY_BUDGET_BYTES, KiB, MiB

MAX_RECENT = 10  #: recent messages kept verbatim per session
MAX_RECENT_BYTES = 32 * KiB  #: estimated heap bytes of a session's recent window
MAX_SUMMARY_CHARS = 2000  #: bound of each session's running summary
KEEP_FRACTION = 0.5  #: compaction folds until the window is under this share of each limit

MAX_SESSIONS = 1000  #: sessions kept in memory before LRU eviction
MAX_MEMORY_BYTES = 500 * MiB  #: global byte budget of the in-memory sessions
MIN_MEMORY_BYTES = MIN_MEMORY_BUDGET_BYTES  #: the smallest budget a manager accepts (units.py)
RETRY_AFTER = 5.0  #: seconds a manager waits before writing to a store that failed
