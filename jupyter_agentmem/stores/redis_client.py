"""Connecting to Redis or Redis Cluster, and the URL and key-byte rules of :mod:`.redis`.

Kept apart from the store so the fleet and lease code can read a store URL
(``cluster_url``, ``public_url``) without the store's save and load paths.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jupyter_agentmem.errors import StoreError

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RedisStore needs redis-py: pip install 'jupyter-agentmem[redis]'") from exc

__all__ = ["cluster_url", "connect", "glob_escape", "id_bytes", "public_url"]


def public_url(url: str) -> str:
    """``url`` with any password (in the netloc or a ``password=`` query) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def id_bytes(session_id: str) -> bytes:
    """The id as key bytes: any Python str round-trips (lone surrogates too)."""
    return session_id.encode("utf-8", "surrogatepass")


def glob_escape(raw: bytes) -> bytes:
    """``raw`` as a literal SCAN MATCH pattern (``*?[]\\`` escaped)."""
    return bytes(b for c in raw for b in ((92, c) if c in b"*?[]\\" else (c,)))


def cluster_url(url: str) -> str | None:
    """The plain ``redis://`` URL behind ``redis+cluster://`` (or ``rediss+cluster://``)."""
    for scheme in ("redis", "rediss"):
        if url.startswith(f"{scheme}+cluster://"):
            return scheme + url[len(scheme) + len("+cluster") :]
    return None


def connect(url: str, socket_timeout: float, connect_timeout: float) -> Any:
    """A client that fails fast: a retried write could land twice."""
    plain = cluster_url(url)
    if plain is None:
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    from redis.cluster import RedisCluster

    try:
        return RedisCluster.from_url(
            plain,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    except RedisError as exc:
        raise StoreError(
            f"cannot reach the Redis Cluster at {public_url(url)} ({type(exc).__name__}: "
            f"{exc}); start it or fix the store URL (c.AgentMem.store_url)"
        ) from exc
