"""Run leases: at most one run per session across a fleet of server instances.

A lease is a key holding a random token with a TTL. ``acquire`` is
``SET key token NX PX ttl``: exactly one contender wins. The holder ``renew``s
it while its run streams (a script that extends the TTL only if the token is
still its own) and ``release``s it at the end (a script that deletes it only if
the token matches, so a holder whose lease expired and was taken over can never
release the new holder's lease). An instance that dies stops renewing; the
lease expires after its TTL and the next ``acquire`` takes it over cleanly.

:class:`RedisLease` shares leases through Redis (standalone or Cluster: one key
per lease, ``{prefix}lease:{<key>}``, hash-tagged like the session's documents);
:class:`LocalLease` is the same interface for a single instance, in process.
Both are async (they live in the server's event loop) and bounded: every Redis
call is bounded by the client's socket timeout, and local leases are dropped
when they expire.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Protocol

from jupyter_agentmem.errors import StoreError

from .redis_async import redis_call, ttl_ms

_LOCAL_PURGE_AT = 10_000

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def new_token(owner: str = "") -> str:
    """An unguessable token; ``owner`` (an instance name) only helps reading Redis."""
    return f"{owner}:{secrets.token_hex(12)}" if owner else secrets.token_hex(12)


class Lease(Protocol):
    """What the server needs to keep one run per session."""

    ttl: float

    async def acquire(self, key: str, token: str) -> bool:
        """Take the lease for ``key`` with ``token`` unless someone holds it."""

    async def renew(self, key: str, token: str) -> bool:
        """Push the expiry back; False if ``token`` no longer holds the lease."""

    async def release(self, key: str, token: str) -> bool:
        """Give the lease up; False (and nothing changes) unless ``token`` holds it."""

    async def holder(self, key: str) -> str | None:
        """The token holding ``key`` now, or None."""


class LocalLease:
    """In-process leases with the same rules, for a single instance."""

    def __init__(self, ttl: float = 30.0) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive seconds")
        self.ttl = ttl
        self._held: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> str | None:
        held = self._held.get(key)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._held[key]
            return None
        return held[0]

    async def acquire(self, key: str, token: str) -> bool:
        if self._live(key) is not None:
            return False
        if len(self._held) >= _LOCAL_PURGE_AT:  # runs that died without releasing
            now = time.monotonic()
            self._held = {k: held for k, held in self._held.items() if held[1] > now}
        self._held[key] = (token, time.monotonic() + self.ttl)
        return True

    async def renew(self, key: str, token: str) -> bool:
        if self._live(key) != token:
            return False
        self._held[key] = (token, time.monotonic() + self.ttl)
        return True

    async def release(self, key: str, token: str) -> bool:
        if self._live(key) != token:
            return False
        del self._held[key]
        return True

    async def holder(self, key: str) -> str | None:
        return self._live(key)


class RedisLease:
    """Leases in Redis, shared by every instance pointing at the same server.

    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``
    (the caller owns it). Redis errors become :class:`StoreError` naming what
    to check; an unanswered call costs one socket timeout, never a hang.
    """

    def __init__(self, client: Any, prefix: str = "agentmem:", ttl: float = 30.0) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive seconds")
        self.ttl = ttl
        self._client = client
        self._prefix = prefix.encode() + b"lease:"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def key(self, key: str) -> bytes:
        return self._prefix + b"{" + key.encode("utf-8", "surrogatepass") + b"}"

    @property
    def _ttl_ms(self) -> int:
        return ttl_ms(self.ttl)

    async def acquire(self, key: str, token: str) -> bool:
        call = self._client.set(self.key(key), token, nx=True, px=self._ttl_ms)
        return bool(await redis_call("taking a run lease", call))

    async def renew(self, key: str, token: str) -> bool:
        call = self._renew(keys=[self.key(key)], args=[token, self._ttl_ms])
        return bool(await redis_call("renewing a run lease", call))

    async def release(self, key: str, token: str) -> bool:
        call = self._release(keys=[self.key(key)], args=[token])
        return bool(await redis_call("releasing a run lease", call))

    async def holder(self, key: str) -> str | None:
        raw = await redis_call("reading a run lease", self._client.get(self.key(key)))
        return None if raw is None else bytes(raw).decode()


async def acquire_waiting(
    lease: Lease, key: str, token: str, timeout: float, poll: float = 0.05
) -> bool:
    """Acquire, waiting up to ``timeout`` seconds for the holder to finish
    (``?multitask=enqueue``); polls with a growing pause, capped at 0.5 s."""
    deadline = time.monotonic() + timeout
    while not await lease.acquire(key, token):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(poll, left))
        poll = min(poll * 1.5, 0.5)
    return True


async def keep_renewed(lease: Lease, key: str, token: str, on_lost: Any = None) -> None:
    """Renew every third of the TTL until cancelled; calls ``on_lost()`` and stops
    if the lease was lost (expired and taken over). Redis errors are retried at
    the next tick: the lease survives a Redis hiccup shorter than two thirds of it."""
    while True:
        await asyncio.sleep(lease.ttl / 3)
        try:
            held = await lease.renew(key, token)
        except StoreError:
            continue
        if not held:
            if on_lost is not None:
                on_lost()
            return
