"""An in-process store for tests and for users who need no persistence.

It keeps JSON text, not the dicts themselves, so a round trip through it is as
strict as one through SQLite: nothing shared with live objects, nothing that
JSON cannot represent.
"""

from __future__ import annotations

import json
import threading

from jupyter_agentmem.errors import SessionConflictError, StoreError

from .base import LogEntry, SessionData

_MAX_LOG = 1_000_000  # entries per session; the manager checkpoints long before this


class MemoryStore:
    """Dict-backed :class:`~jupyter_agentmem.stores.base.SessionStore`."""

    persistent = False  # dies with the process: no turn log unless asked (durable_turns=True)

    def __init__(self) -> None:
        self._docs: dict[str, str] = {}
        self._revisions: dict[str, int] = {}
        self._logs: dict[str, list[LogEntry]] = {}
        self._lock = threading.Lock()
        self.saves = 0
        self.loads = 0

    def save(self, session_id: str, data: SessionData) -> None:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False)
        revision = data.get("revision")
        with self._lock:
            current = self._revisions.get(session_id, 0)
            if revision is not None and int(revision) != current + 1:
                raise SessionConflictError(
                    f"session {session_id!r} is at revision {current} in the store, "
                    f"this write expected {int(revision) - 1}"
                )
            self._docs[session_id] = text
            self._revisions[session_id] = int(revision) if revision is not None else current + 1
            self.saves += 1
            self._compact(session_id, data.get("log_marks"))

    def _compact(self, session_id: str, marks: object) -> None:
        """Drop the log entries the saved document already holds (lock held)."""
        log = self._logs.get(session_id)
        if not log or not isinstance(marks, dict):
            return
        kept = [e for e in log if e[1] > int(marks.get(e[0], 0))]
        if kept:
            self._logs[session_id] = kept
        else:
            del self._logs[session_id]

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        with self._lock:
            for session_id, entry in items:
                log = self._logs.setdefault(session_id, [])
                if len(log) >= _MAX_LOG:
                    raise StoreError(f"the log of session {session_id!r} is full")
                log.append(entry)

    def read_log(self, session_id: str) -> list[LogEntry]:
        with self._lock:
            return list(self._logs.get(session_id, ()))

    def load(self, session_id: str) -> SessionData | None:
        with self._lock:
            text = self._docs.get(session_id)
            revision = self._revisions.get(session_id, 0)
            self.loads += 1
        if text is None:
            return None
        data: SessionData = json.loads(text)
        data["revision"] = revision  # the stored revision is authoritative
        return data

    def delete(self, session_id: str) -> bool:
        with self._lock:
            self._revisions.pop(session_id, None)
            logged = self._logs.pop(session_id, None) is not None
            return self._docs.pop(session_id, None) is not None or logged

    def list_ids(self) -> list[str]:
        with self._lock:
            return list(self._docs) + [sid for sid in self._logs if sid not in self._docs]

    def count(self) -> int:
        """Number of stored sessions (cheap; used by ``SessionManager.stats``)."""
        with self._lock:
            return len(self._docs) + sum(1 for sid in self._logs if sid not in self._docs)

    def close(self) -> None:
        """Nothing to release; kept for the protocol."""

    def __len__(self) -> int:
        return len(self._docs)
