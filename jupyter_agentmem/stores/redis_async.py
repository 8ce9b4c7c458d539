"""One error story for the server's ``redis.asyncio`` calls (run leases, run logs).

Importable without redis-py, like :mod:`.lease` and :mod:`.runlog`, whose
in-process variants need no Redis at all.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from jupyter_agentmem.errors import StoreError

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - only the local variants without redis-py
    RedisError = OSError  # type: ignore[misc,assignment]

__all__ = ["redis_call", "ttl_ms"]


async def redis_call(doing: str, call: Awaitable[Any]) -> Any:
    """Await one Redis call; a Redis failure becomes a :class:`StoreError` saying what to do."""
    try:
        return await call
    except RedisError as exc:
        raise StoreError(
            f"Redis failed while {doing} ({type(exc).__name__}: {exc}); check that "
            "redis-server is running and reachable"
        ) from exc


def ttl_ms(seconds: float) -> int:
    """A TTL in whole milliseconds, never 0 (which Redis would refuse)."""
    return max(1, round(seconds * 1000))
