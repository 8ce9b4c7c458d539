"""SQLite store: the default home of evicted sessions, one file per user.

WAL mode and one short transaction per write keep eviction fast (thousands of
sessions per second) and let several kernels share one file safely. Documents
are JSON text, never pickles; one larger than ``compress_threshold`` (4 KiB) is
stored as a zlib BLOB in the format of :mod:`.codec` (a 50-turn session: ~1.4
KB instead of 14 KB, one page instead of four, ~4x faster to write). Rows of
either kind are read, so files written before compression still load. The
schema is versioned by named, idempotent migrations recorded in a table, and a
file that is not ours is refused rather than overwritten.

The turn log (see ``stores/base.py``) is the ``journal`` table, appended by the
manager's background writer in one transaction per group of messages; saving a
document deletes the entries it covers in the same transaction.

Errors say what happened: a full disk, a read-only file or directory, a busy
file and a damaged file each get their own message (:func:`explain`), never
SQLite's internal follow-up error.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from jupyter_agentmem import fastjson
from jupyter_agentmem.errors import (
    SessionConflictError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreReadOnlyError,
)

from . import codec
from .base import LogEntry, SessionData
from .sqlite_schema import MIGRATIONS as MIGRATIONS

APPLICATION_ID = 0x41474D45  # "AGME": marks the file as ours in its SQLite header
_LOAD_CHUNK = 500  # ids per query in load_many (well under SQLite's bound-parameter limit)
_PERM, _BUSY, _READONLY, _FULL, _CANTOPEN = 3, 5, 8, 13, 14  # SQLite primary result codes
_READ_LOG = "SELECT writer, seq, message FROM journal WHERE session_id = ? ORDER BY id"
_READ_DOC = "SELECT data, revision FROM sessions WHERE id = ?"
_READ_REVISION = "SELECT revision FROM sessions WHERE id = ?"
_INSERT_FIRST = (
    "INSERT OR IGNORE INTO sessions (id, revision, updated_at, data) VALUES (?, 1, ?, ?)"
)
_UPDATE_NEXT = (
    "UPDATE sessions SET revision = ?, updated_at = ?, data = ? WHERE id = ? AND revision = ?"
)
_LOG_ONLY = "SELECT {} FROM journal WHERE session_id NOT IN (SELECT id FROM sessions)"


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite already rolled back after a full
    disk, and a second ROLLBACK would hide the real error behind 'no transaction is active'."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _log_entries(rows: Iterable[Any]) -> list[LogEntry]:
    """Turn-log rows (writer, seq, message) as the store protocol's entries."""
    return [(str(w), int(seq), str(message)) for w, seq, message in rows]


def explain(exc: BaseException, path: Path, doing: str) -> StoreError:
    """An error that says what happened to the file and what to do about it."""
    text = str(exc)
    low = text.lower()
    code = int(getattr(exc, "sqlite_errorcode", -1)) & 0xFF  # primary result code
    os_error = getattr(exc, "errno", None)
    if os_error == errno.ENOSPC or code == _FULL or "disk is full" in low:
        return StoreFullError(
            f"the disk holding {path} is full, so {doing} failed ({text}); the sessions stay "
            "in memory. Free some space there, or move the store to another disk with "
            "%agent_memory config store_url=sqlite:///OTHER/PATH.sqlite3"
        )
    if (
        code in (_READONLY, _CANTOPEN, _PERM)
        or "readonly" in low
        or "unable to open" in low
        or os_error in (errno.EROFS, errno.EACCES, errno.EPERM)
    ):
        return StoreReadOnlyError(
            f"{path} cannot be written by this process (the file or its directory is "
            f"read-only, or it is not a file), so {doing} failed ({text}). Make the file "
            "and its directory writable (SQLite also writes "
            f"'{path.name}-wal' and '-shm' next to it), or choose a writable store with "
            "c.AgentMem.store_url = 'sqlite:///WRITABLE/PATH.sqlite3'"
        )
    if code == _BUSY or "locked" in low:
        return StoreError(
            f"{path} stayed locked by another process, so {doing} failed ({text}); the "
            "sessions stay in memory and are written later"
        )
    if isinstance(exc, sqlite3.OperationalError | OSError):
        return StoreError(f"{doing} failed on {path}: {text}")
    return StoreCorruptError(
        f"{path} is not a readable jupyter-agentmem store ({text}); it was left "
        "untouched: move it away or choose another store path"
    )


class SQLiteStore:
    """File-backed :class:`~jupyter_agentmem.stores.base.SessionStore`."""

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 5.0, compress_threshold: int = 4096
    ) -> None:
        if compress_threshold < 0:
            raise ValueError("compress_threshold must be >= 0 bytes")
        self.compress_threshold = compress_threshold
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as exc:
            raise explain(exc, self.path, "opening the session store") from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise explain(exc, self.path, "opening the session store") from exc
        except StoreError:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        ours = {"sessions", "agentmem_migrations", "journal"}
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables - ours):
            raise StoreCorruptError(
                f"{self.path} is a SQLite database of another application; it was left "
                "untouched: choose another store path"
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS agentmem_migrations"
                " (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT name FROM agentmem_migrations")}
            for name, migrate in MIGRATIONS:
                if name not in done:
                    migrate(db)
                    db.execute("INSERT INTO agentmem_migrations VALUES (?, ?)", (name, time.time()))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    @property
    def migrations(self) -> list[str]:
        """Names of the migrations applied to this file, in order."""
        with self._lock:
            rows = self._db.execute("SELECT name FROM agentmem_migrations ORDER BY name")
            return [row[0] for row in rows]

    def _check(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"the session store {self.path} is closed")
        return self._db

    def _encode(self, data: SessionData) -> str | bytes:
        """JSON text, or a zlib BLOB (:func:`codec.pack`) above the threshold."""
        try:
            text = codec.storable_json(data)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"session document is not JSON: {exc}") from exc
        return codec.pack(text.encode("utf-8"), self.compress_threshold) or text

    def _write(self, db: sqlite3.Connection, session_id: str, data: SessionData) -> None:
        """One statement for the usual save: an ``UPDATE`` guarded by the expected
        revision (or an ``INSERT`` for revision 1), the row updated in place; the
        current revision is read only to word a conflict or for an unversioned write."""
        revision, payload = data.get("revision"), self._encode(data)
        if revision is None:
            revision = self._current(db, session_id) + 1
            db.execute(
                "INSERT OR REPLACE INTO sessions (id, revision, updated_at, data)"
                " VALUES (?, ?, ?, ?)",
                (session_id, revision, time.time(), payload),
            )
        elif not self._replace(db, session_id, int(revision), payload):
            current = self._current(db, session_id)
            raise SessionConflictError(
                f"session {session_id!r} is at revision {current} in {self.path}; "
                f"this write expected {int(revision) - 1} (another kernel changed it)"
            )
        marks = data.get("log_marks")
        if isinstance(marks, dict) and marks:
            db.executemany(
                "DELETE FROM journal WHERE session_id = ? AND writer = ? AND seq <= ?",
                [(session_id, str(w), int(seq)) for w, seq in marks.items()],
            )

    @staticmethod
    def _current(db: sqlite3.Connection, session_id: str) -> int:
        row = db.execute(_READ_REVISION, (session_id,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _replace(db: sqlite3.Connection, session_id: str, revision: int, payload: Any) -> bool:
        """Write revision ``revision`` where the stored one is ``revision - 1`` (none
        stored counts as 0); False, with nothing written, otherwise."""
        now = time.time()
        if revision == 1 and db.execute(_INSERT_FIRST, (session_id, now, payload)).rowcount:
            return True
        args = (revision, now, payload, session_id, revision - 1)
        return db.execute(_UPDATE_NEXT, args).rowcount == 1

    def save(self, session_id: str, data: SessionData) -> None:
        self.save_many([(session_id, data)])

    def save_many(self, items: Iterable[tuple[str, SessionData]]) -> int:
        """Save several sessions in one transaction (all or nothing)."""
        count = 0

        def write(db: sqlite3.Connection) -> None:
            nonlocal count
            for session_id, data in items:
                self._write(db, session_id, data)
                count += 1

        self._transaction(write, "saving sessions")
        return count

    def _transaction(self, work: Callable[[sqlite3.Connection], None], doing: str) -> None:
        """Run ``work`` in one write transaction; SQLite errors are explained."""
        with self._lock:
            db = self._check()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    work(db)
                    db.execute("COMMIT")
                except BaseException:
                    _rollback(db)
                    raise
            except sqlite3.DatabaseError as exc:
                raise explain(exc, self.path, doing) from exc

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        """Append turn-log entries in one transaction (the background writer's group commit)."""
        rows = [(sid, writer, seq, message) for sid, (writer, seq, message) in items]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO journal (session_id, writer, seq, message) VALUES (?, ?, ?, ?)", rows
            )

        self._transaction(write, "appending to the turn log")

    def _select(self, sql: str, session_id: str, doing: str | None) -> list[Any]:
        """The rows of one session's query, under the lock; a database error is
        explained as ``doing`` (``None``: reported as an unreadable file)."""
        with self._lock:
            db = self._check()
            try:
                return db.execute(sql, (session_id,)).fetchall()
            except sqlite3.DatabaseError as exc:
                if doing is None:
                    raise StoreCorruptError(f"cannot read {self.path}: {exc}") from exc
                raise explain(exc, self.path, doing) from exc

    def read_log(self, session_id: str) -> list[LogEntry]:
        return _log_entries(self._select(_READ_LOG, session_id, "reading the turn log"))

    def read_log_and_load(self, session_id: str) -> tuple[list[LogEntry], SessionData | None]:
        """``read_log`` then ``load`` (that order, see ``stores/base.py``) under one
        lock: a restore's two queries without taking it twice."""
        with self._lock:
            db = self._check()
            try:
                log = db.execute(_READ_LOG, (session_id,)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise explain(exc, self.path, "reading the turn log") from exc
            try:
                rows = db.execute(_READ_DOC, (session_id,)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise explain(exc, self.path, "reading a session") from exc
        return _log_entries(log), self._decode(session_id, *rows[0]) if rows else None

    def revision(self, session_id: str) -> int | None:
        """The stored revision alone (an index lookup), or None: a cheap staleness check."""
        rows = self._select(_READ_REVISION, session_id, None)
        return int(rows[0][0]) if rows else None

    def load(self, session_id: str) -> SessionData | None:
        rows = self._select(_READ_DOC, session_id, "reading a session")
        return self._decode(session_id, *rows[0]) if rows else None

    def load_many(self, session_ids: Iterable[str]) -> dict[str, SessionData]:
        """The documents of the ids that exist, read in chunks of one query each
        (a batched restore pays one round of SQLite calls per chunk, not per session)."""
        query = "SELECT id, data, revision FROM sessions WHERE id IN ({})"
        rows = self._select_in(query, session_ids, "reading sessions")
        return {sid: self._decode(sid, text, revision) for sid, text, revision in rows}

    def read_logs(self, session_ids: Iterable[str]) -> dict[str, list[LogEntry]]:
        """``read_log`` of many sessions (those with entries), one query per chunk of ids."""
        query = "SELECT session_id, writer, seq, message FROM journal WHERE session_id IN ({})"
        logs: dict[str, list[LogEntry]] = {}
        for sid, writer, seq, message in self._select_in(
            query + " ORDER BY id", session_ids, "reading the turn log"
        ):
            logs.setdefault(sid, []).append((str(writer), int(seq), str(message)))
        return logs

    def _select_in(self, query: str, session_ids: Iterable[str], doing: str) -> list[Any]:
        wanted = list(dict.fromkeys(session_ids))
        rows: list[Any] = []
        with self._lock:
            db = self._check()
            try:
                for start in range(0, len(wanted), _LOAD_CHUNK):
                    chunk = wanted[start : start + _LOAD_CHUNK]
                    rows += db.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
            except sqlite3.DatabaseError as exc:
                raise explain(exc, self.path, doing) from exc
        return rows

    def _decode(self, session_id: str, stored: str | bytes, revision: int) -> SessionData:
        try:
            data = fastjson.loads(codec.unpack(stored) if isinstance(stored, bytes) else stored)
        except (TypeError, ValueError) as exc:
            raise StoreCorruptError(
                f"session {session_id!r} in {self.path} is damaged (not JSON: {exc}); "
                "other sessions are unaffected"
            ) from exc
        if not isinstance(data, dict):
            raise StoreCorruptError(f"session {session_id!r} in {self.path} is not a document")
        data["revision"] = revision  # the stored revision is authoritative
        return data

    def delete(self, session_id: str) -> bool:
        removed = 0

        def work(db: sqlite3.Connection) -> None:
            nonlocal removed
            removed += db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount
            removed += db.execute(
                "DELETE FROM journal WHERE session_id = ?", (session_id,)
            ).rowcount

        self._transaction(work, "deleting a session")
        return removed > 0

    def list_ids(self) -> list[str]:
        """Saved sessions (least recently saved first), then those only in the turn log."""
        with self._lock:
            db = self._check()
            rows = (
                db.execute("SELECT id FROM sessions ORDER BY updated_at").fetchall()
                + db.execute(_LOG_ONLY.format("DISTINCT session_id")).fetchall()
            )
            return [row[0] for row in rows]

    def count(self) -> int:
        """Number of persisted sessions (cheap; used by ``SessionManager.stats``)."""
        with self._lock:
            db = self._check()
            saved = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            logged = db.execute(_LOG_ONLY.format("COUNT(DISTINCT session_id)")).fetchone()[0]
            return int(saved) + int(logged)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
