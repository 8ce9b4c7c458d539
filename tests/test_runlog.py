"""Run event logs in Redis Streams: resume on another client, live tail, bounds, TTL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncCluster

from jupyter_agentmem.stores.redis import cluster_url
from jupyter_agentmem.stores.runlog import LoggedEvent, RedisEventLog, RunEventsExpired

from . import redis_cluster as cluster_helper
from . import redis_server as server_helper
from .redis_cluster import RedisCluster
from .redis_server import RedisServer

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server
redis_cluster = cluster_helper.redis_cluster


def delta(i: int, text: str) -> LoggedEvent:
    return LoggedEvent(i, "delta", json.dumps({"text": text}))


def answer(texts: list[str], run_id: str = "r") -> list[LoggedEvent]:
    """A run's events as the server numbers them: run, deltas, done."""
    events = [LoggedEvent(1, "run", json.dumps({"run_id": run_id, "session": "s"}))]
    events += [delta(i + 2, t) for i, t in enumerate(texts)]
    done = {"run_id": run_id, "text": "".join(texts)}
    return [*events, LoggedEvent(len(events) + 1, "done", json.dumps(done))]


def text_of(events: list[LoggedEvent]) -> str:
    return "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")


async def collect(log: RedisEventLog, run_id: str, after: int = 0) -> list[LoggedEvent]:
    return [e async for e in log.subscribe(run_id, after)]


@pytest.fixture(params=["redis", "cluster"])
def urls(request: pytest.FixtureRequest) -> tuple[str, bool]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.start()
        return server.url, False
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return str(cluster_url(cluster.url)), True


def run(urls: tuple[str, bool], scenario: Any, **options: Any) -> None:
    """``scenario(log_a, log_b)``: two instances' logs on separate clients, one loop."""

    async def main() -> None:
        url, cluster = urls
        kind: Any = AsyncCluster if cluster else aioredis.Redis
        clients = [kind.from_url(url, socket_timeout=2) for _ in range(2)]
        prefix = f"g{uuid.uuid4().hex[:6]}:"
        logs = [RedisEventLog(c, prefix, **options) for c in clients]
        try:
            await scenario(*logs)
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(main())


def test_another_instance_resumes_with_exactly_the_missing_events(urls: tuple[str, bool]) -> None:
    async def scenario(a: RedisEventLog, b: RedisEventLog) -> None:
        events = answer([f"part {i} " for i in range(20)])
        await a.open("r1", "tenant-a", "s")
        await a.append("r1", events[:8])
        await a.append("r1", events[8:])
        assert await b.owner("r1") == ("tenant-a", "s") and await b.owner("nope") is None
        everything = await collect(b, "r1")
        assert text_of(everything) == "".join(f"part {i} " for i in range(20))
        assert everything[0].event == "run" and everything[-1].event == "done"
        rest = await b.read("r1", 7, block=False)
        assert [e.id for e in rest] == list(range(8, 23))
        assert [e.data for e in rest] == [e.data for e in events[7:]]
        resumed = await collect(b, "r1", after=7)
        assert text_of(resumed) == "".join(f"part {i} " for i in range(6, 20))
        assert resumed[-1].id == events[-1].id

    run(urls, scenario)


def test_a_live_reader_on_another_instance_follows_the_run(urls: tuple[str, bool]) -> None:
    async def scenario(a: RedisEventLog, b: RedisEventLog) -> None:
        events = answer(["a", "b", "c", "d"], "live")
        await a.open("live", "t", "s")
        reader = asyncio.create_task(collect(b, "live", after=0))
        for item in events:
            await asyncio.sleep(0.05)
            await a.append("live", [item])
        got = await asyncio.wait_for(reader, 5)
        assert text_of(got) == "abcd" and got[-1].event == "done"
        assert len(got) >= 3  # it really followed (not just one read at the end)

    run(urls, scenario, block=0.2)


def test_bounded_length_and_ttl(urls: tuple[str, bool]) -> None:
    async def scenario(a: RedisEventLog, b: RedisEventLog) -> None:
        events = answer([f"{i}," for i in range(500)], "long")
        await a.open("long", "t", "s")
        for start in range(0, len(events), 50):
            await a.append("long", events[start : start + 50])
        kept = await a._client.xlen(a.stream_key("long"))
        assert 100 <= kept < 300  # MAXLEN ~100 trims by whole nodes
        with pytest.raises(RunEventsExpired, match="no longer kept"):
            await collect(b, "long", after=3)
        tail = await collect(b, "long", after=480)
        assert text_of(tail) == "".join(f"{i}," for i in range(479, 500))
        await asyncio.sleep(1.2)
        assert await b.owner("long") is None
        assert await a._client.exists(a.stream_key("long")) == 0

    run(urls, scenario, max_events=100, ttl=1)


def test_a_reader_of_a_run_whose_instance_died_gets_an_error_not_a_hang(
    urls: tuple[str, bool],
) -> None:
    async def scenario(a: RedisEventLog, b: RedisEventLog) -> None:
        await a.open("dead", "t", "s")
        await a.append("dead", answer(["x", "y"], "dead")[:3])  # no done: A was killed
        got = await asyncio.wait_for(collect(b, "dead", after=1), 5)
        assert [e.event for e in got] == ["delta", "error"]
        assert "may have died" in json.loads(got[-1].data)["message"]

    run(urls, scenario, idle_timeout=0.5, block=0.2)
