"""The store protocol: where evicted sessions live until they are needed again.

A store keeps one JSON document per session id (the output of
``ConversationState.to_dict()``). Stores never pickle, never see API keys, and
must accept any session id (quotes, slashes, unicode). The memory engine talks
only to this protocol, so it is tested with :class:`MemoryStore` and runs
unchanged on SQLite or Redis.

Revisions (optimistic concurrency, so two kernels sharing a store never
silently overwrite each other's turns): every document carries an int
``"revision"``, the number of times the session has been saved. A document
with ``revision = r`` may only replace a stored one whose revision is ``r - 1``
(or nothing, when ``r == 1``); otherwise ``save`` raises
:class:`~jupyter_agentmem.errors.SessionConflictError` and writes nothing. The
manager then merges (see ``state.merge_documents``) and saves again. A
document without ``"revision"`` is written unconditionally.

The turn log (optional, :class:`LogStore`): so that a kernel killed with SIGKILL
loses no finished turn, each message is also appended to a per-session log as
``(writer, seq, message JSON)``: ``writer`` names one SessionManager, ``seq``
counts that writer's messages in that session (1, 2, ...). A saved document
carries ``"log_marks": {writer: seq}``, the newest entry of each writer that it
already contains; saving it drops those entries from the log (compaction), and a
restore appends only the entries above the marks (``memory/journal.py``), so
an entry is never applied twice, even if it reached the log after the document.
Sessions that only have log entries (never saved whole) are listed and loadable.
A store may also offer ``read_logs(ids) -> {id: entries}`` (SQLite, Redis and
MemoryStore do): the logs of many sessions at once, for ``get_many``; and
``read_log_and_load(id) -> (entries, document)`` (Redis and SQLite do): ``read_log`` then
``load`` in that order, in one round trip, for a single restore.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

SessionData = dict[str, Any]


@runtime_checkable
class SessionStore(Protocol):
    """What the SessionManager needs from a persistence backend."""

    def save(self, session_id: str, data: SessionData) -> None:
        """Persist ``data`` atomically, enforcing the revision rule above."""

    def load(self, session_id: str) -> SessionData | None:
        """Return the saved document, or ``None`` if the id was never saved."""

    def delete(self, session_id: str) -> bool:
        """Forget ``session_id``; return whether something was deleted."""

    def list_ids(self) -> list[str]:
        """Every persisted session id."""

    def close(self) -> None:
        """Release connections and file handles; idempotent."""


LogEntry = tuple[str, int, str]
"""One logged message: (writer, seq, message as JSON text)."""


@runtime_checkable
class LogStore(SessionStore, Protocol):
    """A store that also keeps the per-session turn log described above."""

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        """Append ``(session_id, entry)`` pairs in order, in one transaction."""

    def read_log(self, session_id: str) -> list[LogEntry]:
        """The session's log entries not compacted yet, oldest first."""
