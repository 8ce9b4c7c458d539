"""Where evicted sessions go: in memory (tests), SQLite (default) or Redis (shared)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .base import SessionData, SessionStore
from .memory import MemoryStore
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = [
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "SessionData",
    "SessionStore",
    "default_store_path",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":  # redis-py is an optional extra: import it only when asked
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)


def default_store_path() -> str:
    """``<jupyter data dir>/agentmem/sessions.sqlite3``, the Jupyter place for user data."""
    from jupyter_core.paths import jupyter_data_dir

    return os.path.join(jupyter_data_dir(), "agentmem", "sessions.sqlite3")


def open_store(url: str | None = None) -> SessionStore:
    """A store from a URL: ``sqlite:///path``, ``redis://host:port/db``, ``memory://``,
    or ``redis+cluster://host:port`` (any node of a Redis Cluster).

    ``None`` or ``""`` gives the default SQLite file, so switching backends is a
    configuration change (``c.AgentMem.store_url``), not a code change.
    """
    if not url:
        return SQLiteStore(default_store_path())
    if url == "memory://" or url == "memory":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url[len("sqlite:///") :])
    if url.startswith(
        ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    ):
        from .redis import RedisStore

        store: SessionStore = RedisStore(url)
        return store
    raise ValueError(
        f"unknown store URL {url!r}: use sqlite:///path/to/file.sqlite3, "
        "redis://127.0.0.1:6379/0, redis+cluster://host:port or memory://"
    )
