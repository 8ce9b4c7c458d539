"""Run leases against a real redis-server (and a real Redis Cluster), plus the local twin.

Every rule is checked on both implementations with the same test body:
two acquirers, renew keeps it, release by a wrong token is refused, expiry
lets another instance take over, and a lost lease is noticed by its keeper.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncCluster

from jupyter_agentmem.errors import StoreError
from jupyter_agentmem.stores.lease import (
    Lease,
    LocalLease,
    RedisLease,
    acquire_waiting,
    keep_renewed,
    new_token,
)
from jupyter_agentmem.stores.redis import cluster_url

from . import redis_cluster as cluster_helper
from . import redis_server as server_helper
from .redis_cluster import RedisCluster
from .redis_server import RedisServer

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server
redis_cluster = cluster_helper.redis_cluster

Factory = Callable[[float], Awaitable[tuple[Lease, Lease]]]


def run(coro: Awaitable[Any], leases: Any = None) -> Any:
    """Run a scenario, then close its clients in the same event loop."""

    async def main() -> Any:
        try:
            return await coro
        finally:
            if leases is not None:
                await leases.close()

    return asyncio.run(main())


@pytest.fixture(params=["redis", "cluster", "local"])
def leases(request: pytest.FixtureRequest) -> Iterator[Callable[[float], Any]]:
    """Two "instances" (two clients, or one local table) with a given TTL."""
    prefix = f"l{uuid.uuid4().hex[:6]}:"
    clients: list[Any] = []

    def client() -> Any:
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            server.start()
            made = aioredis.Redis.from_url(server.url, socket_timeout=1)
        else:
            cluster: RedisCluster = request.getfixturevalue("redis_cluster")
            made = AsyncCluster.from_url(str(cluster_url(cluster.url)), socket_timeout=1)
        clients.append(made)
        return made

    def make(ttl: float) -> tuple[Lease, Lease]:
        if request.param == "local":
            shared = LocalLease(ttl)
            return shared, shared
        return RedisLease(client(), prefix, ttl), RedisLease(client(), prefix, ttl)

    async def close() -> None:
        for made in clients:
            await made.aclose()
        clients.clear()

    make.close = close  # type: ignore[attr-defined]
    yield make


def test_two_acquirers_one_winner_and_release_by_the_wrong_token_is_refused(
    leases: Callable[[float], tuple[Lease, Lease]],
) -> None:
    async def scenario() -> None:
        a, b = leases(5)
        ta, tb = new_token("A"), new_token("B")
        wins = await asyncio.gather(a.acquire("t/s1", ta), b.acquire("t/s1", tb))
        assert sorted(wins) == [False, True]
        holder, other = (ta, tb) if wins[0] else (tb, ta)
        assert await b.holder("t/s1") == holder
        assert not await a.release("t/s1", other) and not await b.renew("t/s1", other)
        assert await a.holder("t/s1") == holder  # untouched
        assert await b.acquire("t/s2", other)  # other sessions are independent
        assert await a.release("t/s1", holder)
        assert not await a.release("t/s1", holder)  # idempotent: nothing to release
        assert await b.acquire("t/s1", other)

    run(scenario(), leases)


def test_renew_keeps_it_and_expiry_lets_another_instance_take_over(
    leases: Callable[[float], tuple[Lease, Lease]],
) -> None:
    async def scenario() -> None:
        a, b = leases(1.0)  # generous: a loaded CI box must not make it flaky
        ta, tb = new_token("A"), new_token("B")
        assert await a.acquire("s", ta)
        for _ in range(5):  # 1.5 s in all, longer than the TTL: renewals keep it
            await asyncio.sleep(0.3)
            assert await a.renew("s", ta)
            assert not await b.acquire("s", tb)
        await asyncio.sleep(1.3)  # A "died": no renewal
        assert await b.holder("s") is None
        assert await b.acquire("s", tb)
        assert not await a.renew("s", ta) and not await a.release("s", ta)  # too late
        assert await a.holder("s") == tb

    run(scenario(), leases)


def test_keeper_renews_while_running_and_reports_a_lost_lease(
    leases: Callable[[float], tuple[Lease, Lease]],
) -> None:
    async def scenario() -> None:
        a, b = leases(1.2)  # renewed every 0.4 s
        ta, tb = new_token("A"), new_token("B")
        assert await a.acquire("s", ta)
        lost: list[bool] = []
        keeper = asyncio.create_task(keep_renewed(a, "s", ta, lambda: lost.append(True)))
        await asyncio.sleep(3.0)  # 2.5 TTLs
        assert not await b.acquire("s", tb) and not lost
        assert await b.holder("s") == ta
        # Enqueue semantics: B waits and gets it as soon as A releases.
        waiter = asyncio.create_task(acquire_waiting(b, "s", tb, timeout=5))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        keeper.cancel()
        assert await a.release("s", ta)
        assert await asyncio.wait_for(waiter, 2) is True
        # A keeper whose lease was taken over says so and stops.
        keeper = asyncio.create_task(keep_renewed(a, "s", ta, lambda: lost.append(True)))
        await asyncio.wait_for(keeper, 2)
        assert lost == [True] and await a.holder("s") == tb
        assert not await acquire_waiting(a, "s", ta, timeout=0.05)

    run(scenario(), leases)


def test_redis_down_is_a_clear_store_error(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        redis_server.start()
        client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.5)
        lease = RedisLease(client, "down:", 5)
        assert await lease.acquire("s", "t")
        redis_server.pause(1.5)
        try:
            with pytest.raises(StoreError, match="Timeout"):
                await lease.renew("s", "t")
        finally:
            redis_server.resume()
        assert await lease.renew("s", "t")
        await client.aclose()

    run(scenario())
