"""More of the fleet against real processes: a frozen Redis, a Redis Cluster, ``--workers 2``.

- A redis-server frozen with SIGSTOP while ``/chat`` runs costs each Redis call at
  most the store's ``socket_timeout``: the turn still completes (the answer is kept
  in memory and written when Redis answers again), and ``/healthz`` stays fast.
- The fleet tests of ``test_serve_fleet.py`` (hopping, 409, resume elsewhere) run
  again with both instances on the local 3-master Redis Cluster.
- ``jupyter-agentmem serve --workers 2 --store redis://`` (uvicorn's process
  manager) serves one session over several turns with nothing lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jupyter_agentmem.testing import FakeModelServer

from . import redis_cluster as cluster_helper
from . import redis_server as server_helper
from .redis_cluster import RedisCluster
from .redis_server import RedisServer
from .serve_helpers import ALICE, Event, Served, chat, text_of
from .test_serve_fleet import (  # the same fleet tests, now on the Redis Cluster
    instance,
    messages,
    test_a_conversation_hopping_between_instances_loses_and_reorders_nothing,
    test_one_run_per_session_across_instances_409_or_enqueue,
    test_resume_on_another_instance_gets_exactly_the_missing_events,
)
from .test_serve_fleet_faults import spawn

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server
redis_cluster = cluster_helper.redis_cluster
TIMEOUT = 0.5  # the store's and the fleet's socket timeout in these tests

__all__ = [
    "test_a_conversation_hopping_between_instances_loses_and_reorders_nothing",
    "test_one_run_per_session_across_instances_409_or_enqueue",
    "test_resume_on_another_instance_gets_exactly_the_missing_events",
]


@pytest.fixture
def pair(model: FakeModelServer, redis_cluster: RedisCluster) -> Iterator[tuple[Served, Served]]:
    """Two instances on the Redis Cluster (the imported tests take this ``pair``)."""
    prefix = f"fc{uuid.uuid4().hex[:6]}:"
    a, b = (instance(model, redis_cluster.url, prefix) for _ in range(2))
    assert a.agent.manager.store.cluster  # type: ignore[attr-defined]
    yield a, b
    for served in (a, b):
        served.close()
        served.agent.close()
        served.agent.manager.close()


def test_a_frozen_redis_costs_a_bounded_wait_and_healthz_stays_fast(
    model: FakeModelServer, redis_server: RedisServer
) -> None:
    redis_server.start()
    prefix = f"s{uuid.uuid4().hex[:6]}:"
    a, b = (instance(model, redis_server.url, prefix, timeout=TIMEOUT) for _ in range(2))
    a.agent.manager.create_offline = True  # what `serve --store redis://` sets
    result: dict[str, object] = {}
    try:
        with a.client(ALICE) as client:
            model.enqueue_text("before")
            chat(client, "slow", "q-before")
            model.enqueue_text("during the freeze", chunk_size=3, delay=0.02)

            def turn() -> None:
                started = time.monotonic()
                with a.client(ALICE) as c:
                    result["events"] = chat(c, "slow", "q-frozen")
                result["seconds"] = time.monotonic() - started

            redis_server.pause(6.0)  # frozen far longer than any bound below
            thread = threading.Thread(target=turn)
            thread.start()
            health = []
            for _ in range(5):  # the event loop is never blocked by a frozen Redis
                started = time.monotonic()
                assert client.get("/healthz", timeout=1.0).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.1)
            thread.join(5.0)
            assert not thread.is_alive(), "a request was stuck on the frozen Redis"
            assert max(health) < 0.5, health
        events: list[Event] = result["events"]  # type: ignore[assignment]
        assert events[-1].event == "done" and text_of(events) == "during the freeze"
        assert float(result["seconds"]) < 5.0  # type: ignore[arg-type]
    finally:
        redis_server.resume()
    time.sleep(1.0)  # less than the lease TTL (2 s): a take that landed late must not lock it
    model.enqueue_text("after")
    with a.client(ALICE) as client:
        chat(client, "slow", "q-after")  # writes the turn kept in memory during the freeze
    expected = ["q-before", "before", "q-frozen", "during the freeze", "q-after", "after"]
    assert messages(b, "slow") == expected
    for served in (a, b):
        served.close()
        served.agent.close()


def test_serve_with_two_workers_over_redis_loses_no_turn(
    tmp_path: Path, model: FakeModelServer, redis_server: RedisServer
) -> None:
    redis_server.start()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    proc, url = spawn(tmp_path, model, redis_server.url, tokens, "--workers", "2")
    headers = {"Authorization": f"Bearer {ALICE}"}
    expected: list[str] = []
    try:
        for turn in range(6):  # a new connection each turn: uvicorn spreads them over workers
            model.enqueue_text(f"answer {turn}")
            with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
                events = chat(client, "w2", f"question {turn}")
            assert events[-1].data["text"] == f"answer {turn}"
            expected += [f"question {turn}", f"answer {turn}"]
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            for _ in range(4):  # whichever worker answers, it shows every turn in order
                view = client.get("/sessions/w2")
                assert [m["content"] for m in view.json()["messages"]] == expected
    finally:
        proc.terminate()
        proc.wait(15)
    assert proc.returncode == 0
