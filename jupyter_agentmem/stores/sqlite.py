"""SQLite store: the default home of evicted sessions, one file per user.

WAL mode and one short transaction per write keep eviction fast (thousands of
sessions per second) and let several kernels share one file safely. Documents
are JSON text, never pickles. The schema is versioned by named, idempotent
migrations recorded in a table, and a file that is not ours is refused rather
than overwritten.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError

from .base import SessionData

APPLICATION_ID = 0x41474D45  # "AGME": marks the file as ours in its SQLite header
_LOAD_CHUNK = 500  # ids per query in load_many (well under SQLite's bound-parameter limit)


def _m001_sessions(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS sessions ("
        " id TEXT PRIMARY KEY,"
        " revision INTEGER NOT NULL,"
        " updated_at REAL NOT NULL,"
        " data TEXT NOT NULL)"
    )


def _m002_updated_index(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions(updated_at)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_sessions", _m001_sessions),
    ("m002_updated_index", _m002_updated_index),
]


class SQLiteStore:
    """File-backed :class:`~jupyter_agentmem.stores.base.SessionStore`."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open session store {self.path}: {exc}") from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreCorruptError(
                f"{self.path} is not a readable jupyter-agentmem store ({exc}); it was left "
                "untouched: move it away or choose another store path"
            ) from exc
        except StoreError:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        ours = {"sessions", "agentmem_migrations"}
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
            db.execute("ROLLBACK")
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

    @staticmethod
    def _encode(data: SessionData) -> str:
        try:
            return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"session document is not JSON: {exc}") from exc

    def _write(self, db: sqlite3.Connection, session_id: str, data: SessionData) -> None:
        revision = data.get("revision")
        row = db.execute("SELECT revision FROM sessions WHERE id = ?", (session_id,)).fetchone()
        current = row[0] if row else 0
        if revision is None:
            revision = current + 1
        elif int(revision) != current + 1:
            raise SessionConflictError(
                f"session {session_id!r} is at revision {current} in {self.path}; "
                f"this write expected {int(revision) - 1} (another kernel changed it)"
            )
        db.execute(
            "INSERT OR REPLACE INTO sessions (id, revision, updated_at, data) VALUES (?, ?, ?, ?)",
            (session_id, int(revision), time.time(), self._encode(data)),
        )

    def save(self, session_id: str, data: SessionData) -> None:
        self.save_many([(session_id, data)])

    def save_many(self, items: Iterable[tuple[str, SessionData]]) -> int:
        """Save several sessions in one transaction (all or nothing)."""
        with self._lock:
            db = self._check()
            count = 0
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    for session_id, data in items:
                        self._write(db, session_id, data)
                        count += 1
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot write to {self.path}: {exc}") from exc
            return count

    def load(self, session_id: str) -> SessionData | None:
        with self._lock:
            db = self._check()
            try:
                row = db.execute(
                    "SELECT data, revision FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                raise StoreCorruptError(f"cannot read {self.path}: {exc}") from exc
        if row is None:
            return None
        try:
            data = json.loads(row[0])
        except (TypeError, ValueError) as exc:
            raise StoreCorruptError(
                f"session {session_id!r} in {self.path} is damaged (not JSON: {exc}); "
                "other sessions are unaffected"
            ) from exc
        if not isinstance(data, dict):
            raise StoreCorruptError(f"session {session_id!r} in {self.path} is not a document")
        data["revision"] = row[1]  # the stored revision is authoritative
        return data

    def load_many(self, session_ids: Iterable[str]) -> dict[str, SessionData]:
        """The documents of the ids that exist, read in chunks of one query each
        (a batched restore pays one round of SQLite calls per chunk, not per session)."""
        wanted = list(dict.fromkeys(session_ids))
        rows: list[tuple[str, str, int]] = []
        with self._lock:
            db = self._check()
            try:
                for start in range(0, len(wanted), _LOAD_CHUNK):
                    chunk = wanted[start : start + _LOAD_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT id, data, revision FROM sessions WHERE id IN ({marks})"
                    rows += db.execute(query, chunk).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreCorruptError(f"cannot read {self.path}: {exc}") from exc
        return {sid: self._decode(sid, text, revision) for sid, text, revision in rows}

    def _decode(self, session_id: str, text: str, revision: int) -> SessionData:
        try:
            data = json.loads(text)
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
        with self._lock:
            db = self._check()
            return db.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0

    def list_ids(self) -> list[str]:
        with self._lock:
            db = self._check()
            return [row[0] for row in db.execute("SELECT id FROM sessions ORDER BY updated_at")]

    def count(self) -> int:
        """Number of persisted sessions (cheap; used by ``SessionManager.stats``)."""
        with self._lock:
            return int(self._check().execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
