"""The SQLite store's schema: named, idempotent migrations, applied in order and
recorded in the file (``SQLiteStore`` runs the missing ones when it opens a file).

Kept apart from ``sqlite.py`` so the store reads as its I/O alone; a new column or
table is one more function appended to :data:`MIGRATIONS`, never an edit of one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS"]


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


def _m003_journal(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS journal ("
        " id INTEGER PRIMARY KEY,"
        " session_id TEXT NOT NULL,"
        " writer TEXT NOT NULL,"
        " seq INTEGER NOT NULL,"
        " message TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS journal_session ON journal(session_id, writer, seq)")


MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None]]] = [
    ("m001_sessions", _m001_sessions),
    ("m002_updated_index", _m002_updated_index),
    ("m003_journal", _m003_journal),
]
