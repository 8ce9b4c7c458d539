"""Several server instances over one Redis: one run per session fleet-wide, resumable anywhere.

When the store is Redis, every instance of ``jupyter-agentmem serve`` pointing
at it shares three things besides the sessions themselves:

- a **run lease** per session (``stores/lease.py``): taken before a run starts
  (409, or a wait with ``?multitask=enqueue``), renewed while it streams,
  released when it ends, expiring if its instance dies;
- a **run event log** (``stores/runlog.py``): each run's numbered events are
  mirrored to a Redis stream, so ``GET /runs/{id}/events`` with ``Last-Event-ID``
  works on any instance;
- **warm sessions**: before a turn the instance compares its in-memory copy's
  revision with Redis (one HGET) and reloads a stale one; after the turn it
  saves that session, so the next instance sees it.

Redis faults degrade rather than fail: if Redis cannot be reached, a run takes
a local lease (the instance keeps answering the sessions it holds), events
stay in memory only, and the session's save waits in memory until Redis is
back; each kind of fault is logged once until it clears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from jupyter_agentmem.errors import StoreError
from jupyter_agentmem.stores.lease import (
    LocalLease,
    RedisLease,
    acquire_waiting,
    keep_renewed,
    new_token,
)
from jupyter_agentmem.stores.redis import cluster_url
from jupyter_agentmem.stores.runlog import LoggedEvent, RedisEventLog, RunEventsExpired

log = logging.getLogger(__name__)

_GHOST_SECONDS = 60.0  # how long a lease whose take timed out is still cleaned up
_MAX_PENDING = 10_000  # events of one run waiting for Redis; beyond, the mirror gives up


def redis_client(url: str, timeout: float = 2.0) -> Any:
    """An asyncio client for ``redis://`` or ``redis+cluster://`` (bounded timeouts)."""
    plain = cluster_url(url)
    if plain is not None:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(plain, socket_timeout=timeout, socket_connect_timeout=timeout)
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class Fleet:
    """The Redis side of one server instance (see the module docstring)."""

    def __init__(
        self,
        url: str,
        prefix: str = "agentmem:",
        *,
        lease_ttl: float = 15.0,
        event_ttl: float = 120.0,
        max_events: int = 10_000,
        timeout: float = 2.0,
        enqueue_timeout: float = 300.0,
    ) -> None:
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self._client = redis_client(url, timeout)
        self.lease = RedisLease(self._client, prefix, lease_ttl)
        self.local = LocalLease(lease_ttl)
        self.log = RedisEventLog(
            self._client, prefix, ttl=event_ttl, max_events=max_events, idle_timeout=lease_ttl * 2
        )
        self.enqueue_timeout = enqueue_timeout
        self.faults: dict[str, str] = {}  # what is degraded now -> why (logged once)
        self.counts = {"lease_busy": 0, "lease_local": 0, "mirror_failures": 0}
        self._ghosts: set[asyncio.Task[None]] = set()  # bounded: each ends within lease_ttl

    # ----------------------------------------------------------------- faults
    def _fault(self, kind: str, exc: Exception) -> None:
        if kind not in self.faults:
            log.warning("Redis %s failed (%s); degrading until it is back", kind, exc)
        self.faults[kind] = str(exc)

    def _cleared(self, kind: str) -> None:
        if self.faults.pop(kind, None) is not None:
            log.warning("Redis %s works again", kind)

    # ------------------------------------------------------------------ lease
    async def acquire(self, key: str, wait: bool) -> tuple[str, bool] | None:
        """``(token, shared)`` once this instance may run ``key``, or None (409).

        ``shared`` is False when Redis was unreachable and a local lease was taken.
        """
        token = new_token(self.instance)
        try:
            if wait:
                won = await acquire_waiting(self.lease, key, token, self.enqueue_timeout)
            else:
                won = await self.lease.acquire(key, token)
        except StoreError as exc:
            self._fault("lease", exc)
            self.counts["lease_local"] += 1
            held = await self.local.acquire(key, token)
            return (token, False) if held else None
        self._cleared("lease")
        if not won:
            self.counts["lease_busy"] += 1
            return None
        return token, True

    def keep(self, key: str, token: str, shared: bool) -> asyncio.Task[None]:
        lease = self.lease if shared else self.local
        return asyncio.get_running_loop().create_task(
            keep_renewed(lease, key, token, lambda: log.warning("lost the run lease of %s", key))
        )

    async def release(self, key: str, token: str, shared: bool) -> None:
        try:
            await (self.lease if shared else self.local).release(key, token)
        except StoreError as exc:  # it expires by itself
            self._fault("lease", exc)
            shared = False
        if not shared:  # a timed-out take (or release) may still land in a slow Redis
            task = asyncio.get_running_loop().create_task(self._release_ghost(key, token))
            self._ghosts.add(task)
            task.add_done_callback(self._ghosts.discard)

    async def _release_ghost(self, key: str, token: str) -> None:
        """Delete our token's Redis lease once Redis answers again, so a frozen Redis
        does not lock the session for a whole TTL after it thaws (compare-and-delete:
        never another instance's lease). Bounded: gives up after ``_GHOST_SECONDS``."""
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + max(self.lease.ttl, _GHOST_SECONDS), 0.1
        while loop.time() < deadline:
            try:
                await self.lease.release(key, token)
                return
            except StoreError:
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)

    # ----------------------------------------------------------------- events
    def mirror(self, run_id: str, tenant: str, session: str) -> Mirror:
        return Mirror(self, run_id, tenant, session)

    async def owner(self, run_id: str) -> tuple[str, str] | None:
        try:
            return await self.log.owner(run_id)
        except StoreError as exc:
            self._fault("event log", exc)
            return None

    async def aclose(self) -> None:
        for task in list(self._ghosts):
            task.cancel()
        await self._client.aclose()


class Mirror:
    """Copies one run's events to the Redis log from a background task, in order,
    in batches; never slows the run down (a Redis failure ends the mirroring)."""

    def __init__(self, fleet: Fleet, run_id: str, tenant: str, session: str) -> None:
        self.fleet, self.run_id = fleet, run_id
        self._pending: list[LoggedEvent] = []
        self._wake = asyncio.Event()
        self._ended = False
        self._task = asyncio.get_running_loop().create_task(self._write(tenant, session))

    def add(self, ident: int, event: str, data: str) -> None:
        if self._task.done():
            return
        self._pending.append(LoggedEvent(ident, event, data))
        if len(self._pending) > _MAX_PENDING:
            self._task.cancel()
        self._wake.set()

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    async def _write(self, tenant: str, session: str) -> None:
        try:
            await self.fleet.log.open(self.run_id, tenant, session)
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch, self._pending = self._pending, []
                await self.fleet.log.append(self.run_id, batch)
                if self._ended and not self._pending:
                    break
            self.fleet._cleared("event log")
        except StoreError as exc:
            self.fleet.counts["mirror_failures"] += 1
            self.fleet._fault("event log", exc)

    async def flushed(self, timeout: float) -> None:
        """Wait (bounded) until every event so far is in Redis (used at shutdown)."""
        self.end()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)


class RemoteRun:
    """A run of another instance, read from the Redis log (resume only)."""

    task = None
    finished = False
    first_kept = 0

    def __init__(self, fleet: Fleet, run_id: str, session: str) -> None:
        self.fleet, self.run_id, self.session = fleet, run_id, session

    async def subscribe(
        self, after: int, expired: Callable[[str], Exception]
    ) -> AsyncIterator[Any]:
        try:
            async for item in self.fleet.log.subscribe(self.run_id, after):
                yield _Sent(item)
        except RunEventsExpired as exc:
            raise expired(str(exc)) from exc


class _Sent:
    """A logged event shaped like ``runs.RunEvent`` for the SSE writer."""

    __slots__ = ("_data", "event", "id")

    def __init__(self, item: LoggedEvent) -> None:
        self.id, self.event, self._data = item.id, item.event, item.data

    def data(self) -> str:
        return self._data
