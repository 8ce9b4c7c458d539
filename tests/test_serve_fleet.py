"""Several server instances over one real redis-server: hopping, 409, resume elsewhere.

Each "instance" is a real uvicorn with its own Agent, SessionManager, RedisStore
and Fleet (as separate processes would have), all on one redis-server and one
loopback model server. A conversation hops between them on every turn.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.serve.fleet import Fleet
from jupyter_agentmem.stores.redis import RedisStore
from jupyter_agentmem.testing import FakeModelServer

from . import redis_server as server_helper
from .redis_server import RedisServer
from .serve_helpers import ALICE, BOB, TOKENS, Event, Served, chat, parse_sse, text_of

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server
ANSWER = "".join(f"word{i:02d} " for i in range(40))


def instance(
    model: FakeModelServer, url: str, prefix: str, timeout: float = 2.0, **fleet: Any
) -> Served:
    config = AgentMem(
        base_url=model.base_url, model="m", max_retries=0, timeout=5.0, summarizer="extractive"
    )
    manager = SessionManager(
        store=RedisStore(url, prefix=prefix, socket_timeout=timeout, connect_timeout=timeout),
        max_recent=10_000,
        max_recent_bytes=10**8,
        retry_after=0.1,
    )
    fleet.setdefault("lease_ttl", 2.0)
    fleet.setdefault("timeout", timeout)
    return Served(Agent(manager, config), tokens=TOKENS, fleet=Fleet(url, prefix, **fleet))


@pytest.fixture
def pair(model: FakeModelServer, redis_server: RedisServer) -> Iterator[tuple[Served, Served]]:
    redis_server.start()
    prefix = f"f{uuid.uuid4().hex[:6]}:"
    a, b = (instance(model, redis_server.url, prefix) for _ in range(2))
    yield a, b
    for served in (a, b):
        served.close()
        served.agent.close()
        served.agent.manager.close()


def messages(served: Served, session: str) -> list[str]:
    with served.client(ALICE) as client:
        view = client.get(f"/sessions/{session}")
    assert view.status_code == 200, view.text
    return [m["content"] for m in view.json()["messages"]]


def test_a_conversation_hopping_between_instances_loses_and_reorders_nothing(
    model: FakeModelServer, pair: tuple[Served, Served]
) -> None:
    expected: list[str] = []
    for turn in range(6):
        served = pair[turn % 2]
        model.enqueue_text(f"answer {turn}")
        with served.client(ALICE) as client:
            events = chat(client, "hop", f"question {turn}")
        assert events[-1].event == "done" and events[-1].data["text"] == f"answer {turn}"
        expected += [f"question {turn}", f"answer {turn}"]
    # both instances hold the session warm in memory, and both serve the newest copy
    assert messages(pair[0], "hop") == messages(pair[1], "hop") == expected
    stale = [s.agent.manager.sharing["stale_reloads"] for s in pair]
    assert stale[0] >= 2 and stale[1] >= 2  # each reloaded the copy the other superseded


def test_one_run_per_session_across_instances_409_or_enqueue(
    model: FakeModelServer, pair: tuple[Served, Served]
) -> None:
    a, b = pair
    model.enqueue_text("first answer, slowly", chunk_size=2, delay=0.03)
    model.enqueue_text("bob's answer")  # the model answers in this order
    model.enqueue_text("second answer")
    results: dict[str, list[Event]] = {}

    def first() -> None:
        with a.client(ALICE) as client:
            results["a"] = chat(client, "busy", "one")

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.3)  # A's run holds the fleet lease now
    with b.client(ALICE) as client:
        refused = client.post("/chat", json={"session": "busy", "message": "two"})
        assert refused.status_code == 409 and "another server" in refused.json()["error"]
        with b.client(BOB) as bob:  # another tenant's session of the same name is free
            assert chat(bob, "busy", "hi")[-1].data["text"] == "bob's answer"
        queued = chat(client, "busy", "two", multitask="enqueue")
    thread.join(10)
    assert results["a"][-1].data["text"] == "first answer, slowly"
    assert queued[-1].data["text"] == "second answer"
    assert messages(b, "busy") == ["one", "first answer, slowly", "two", "second answer"]


def test_resume_on_another_instance_gets_exactly_the_missing_events(
    model: FakeModelServer, pair: tuple[Served, Served]
) -> None:
    a, b = pair
    model.enqueue_text(ANSWER, chunk_size=7, delay=0.02)
    first: list[Event] = []
    with a.client(ALICE) as client:
        body = {"session": "resume", "message": "a long story"}
        with client.stream("POST", "/chat", json=body) as response:
            for event in parse_sse(response.iter_lines()):
                first.append(event)
                if len(first) == 6:
                    break  # the client drops the connection to A
    run_id, last = first[0].data["run_id"], first[-1].id
    assert last == "6"
    url = f"/runs/{run_id}/events"
    with b.client(BOB) as bob:  # tenants stay apart on every instance
        assert bob.get(url, headers={"Last-Event-ID": last}).status_code == 404
    with (
        b.client(ALICE) as client,
        client.stream("GET", url, headers={"Last-Event-ID": last}) as response,
    ):
        assert response.status_code == 200
        rest = list(parse_sse(response.iter_lines()))
    ids = [int(e.id or 0) for e in rest]
    assert ids[0] == 7 or (ids[0] > 6 and rest[0].event == "delta")
    assert ids == sorted(set(ids)) and rest[-1].event == "done"
    assert text_of(first) + text_of(rest) == rest[-1].data["text"] == ANSWER
    assert messages(b, "resume")[-1] == ANSWER  # stored, and visible from B


def test_an_unknown_run_is_404_on_every_instance(pair: tuple[Served, Served]) -> None:
    for served in pair:
        with served.client(ALICE) as client:
            assert client.get("/runs/nope/events").status_code == 404


def test_clients_of_both_instances_share_one_httpx_pool(pair: tuple[Served, Served]) -> None:
    with httpx.Client(timeout=5) as client:  # a load balancer's view: same API everywhere
        for served in pair:
            response = client.get(f"{served.url}/healthz")
            assert response.json() == {"status": "ok"}
