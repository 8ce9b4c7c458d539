"""Runs outlive their clients: resume with Last-Event-ID, cancel on disconnect, 409 / enqueue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from jupyter_agentmem.agent.chat import INTERRUPTED
from jupyter_agentmem.testing import FakeModelServer

from .serve_helpers import Event, Served, chat, make_agent, parse_sse, text_of

ANSWER = "".join(f"word{i:02d} " for i in range(40))  # 280 chars


@pytest.fixture(scope="module")
def served(model: FakeModelServer) -> Iterator[Served]:
    agent = make_agent(model)
    srv = Served(agent)  # local mode: no tokens, loopback
    yield srv
    srv.close()
    agent.close()


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as c:
        yield c


def read_some(client: httpx.Client, session: str, count: int, **params: str) -> list[Event]:
    """Start a run, read ``count`` events, then drop the connection."""
    got: list[Event] = []
    body = {"session": session, "message": "tell me a long story"}
    with client.stream("POST", "/chat", json=body, params=params) as response:
        assert response.status_code == 200
        for event in parse_sse(response.iter_lines()):
            got.append(event)
            if len(got) == count:
                break
    return got


def is_busy(client: httpx.Client, session: str) -> bool:
    view = client.get(f"/sessions/{session}")
    return view.status_code == 200 and bool(view.json()["busy"])


def wait_free(client: httpx.Client, session: str, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/sessions/{session}")
        if view.status_code == 200 and not view.json()["busy"]:
            return dict(view.json())
        time.sleep(0.05)
    raise AssertionError(f"session {session} still busy")


def test_resume_after_disconnect_gets_exactly_the_rest(
    model: FakeModelServer, client: httpx.Client
) -> None:
    model.enqueue_text(ANSWER, chunk_size=7, delay=0.02)
    first = read_some(client, "resume", 6)
    run_id, last = first[0].data["run_id"], first[-1].id
    assert last == "6"
    time.sleep(0.2)  # the run keeps producing while nobody listens
    url = f"/runs/{run_id}/events"
    with client.stream("GET", url, headers={"Last-Event-ID": last}) as response:
        assert response.status_code == 200
        rest = list(parse_sse(response.iter_lines()))
    ids = [int(e.id or 0) for e in rest]
    # deltas waiting since the disconnect arrive merged under the last id they cover
    assert ids[0] > 6 and ids == sorted(set(ids))  # nothing at or before 6, no duplicate
    assert rest[-1].event == "done"
    assert text_of(first) + text_of(rest) == rest[-1].data["text"] == ANSWER  # none missing
    view = wait_free(client, "resume")
    assert view["messages"][-1] == {"role": "assistant", "content": ANSWER}  # type: ignore[index]
    # a second resume from the same id replays the same events (kept for a while)
    with client.stream("GET", url, headers={"Last-Event-ID": last}) as response:
        again = list(parse_sse(response.iter_lines()))
    assert text_of(again) == text_of(rest) and again[-1].data == rest[-1].data


def test_run_finishes_and_is_stored_when_its_client_leaves(
    model: FakeModelServer, client: httpx.Client
) -> None:
    disconnects = model.client_disconnects
    model.enqueue_text(ANSWER, chunk_size=7, delay=0.01)
    read_some(client, "left", 3)
    view = wait_free(client, "left")
    assert view["messages"][-1] == {"role": "assistant", "content": ANSWER}  # type: ignore[index]
    assert model.client_disconnects == disconnects


def test_cancel_on_disconnect_stores_the_partial_answer(
    model: FakeModelServer, client: httpx.Client
) -> None:
    model.enqueue_text(ANSWER, chunk_size=7, delay=0.05)
    first = read_some(client, "cancelled", 4, on_disconnect="cancel")
    view = wait_free(client, "cancelled")
    stored = view["messages"][-1]["content"]  # type: ignore[index]
    assert stored.endswith(INTERRUPTED)
    partial = stored[: -len(INTERRUPTED)]
    assert ANSWER.startswith(partial) and text_of(first) in partial and len(partial) < len(ANSWER)
    # the run's own record says so too
    run_id = first[0].data["run_id"]
    with client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "1"}) as r:
        done = list(parse_sse(r.iter_lines()))[-1]
    assert done.event == "done" and done.data["interrupted"] is True


def test_second_run_on_a_busy_session_is_409_or_waits(
    model: FakeModelServer, client: httpx.Client, served: Served
) -> None:
    model.enqueue_text("first answer, slowly", chunk_size=2, delay=0.03)
    model.enqueue_text("second answer")
    results: dict[str, list[Event]] = {}
    first = threading.Thread(target=lambda: results.update(a=chat(client, "busy", "one")))
    first.start()
    deadline = time.monotonic() + 5
    while not is_busy(client, "busy"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    refused = client.post("/chat", json={"session": "busy", "message": "two"})
    assert refused.status_code == 409 and "multitask=enqueue" in refused.json()["error"]
    with served.client() as other:
        queued = chat(other, "busy", "two", multitask="enqueue")
    first.join(10)
    assert results["a"][-1].data["text"] == "first answer, slowly"
    assert queued[-1].data["text"] == "second answer"
    contents = [m["content"] for m in client.get("/sessions/busy").json()["messages"]]
    assert contents == ["one", "first answer, slowly", "two", "second answer"]


def test_bad_last_event_id_and_unknown_run(client: httpx.Client) -> None:
    response = client.get("/runs/nope/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422 and "Last-Event-ID" in response.json()["error"]
    response = client.get("/runs/nope/events")
    assert response.status_code == 404 and "kept" in response.json()["error"]


def test_event_buffer_is_bounded_in_bytes_and_time(model: FakeModelServer) -> None:
    agent = make_agent(model)
    served = Served(agent, max_run_bytes=300, event_ttl=0.3)
    try:
        with served.client() as client:
            model.enqueue_text(ANSWER * 3, chunk_size=7)
            events = chat(client, "bounded", "long")
            run_id = events[0].data["run_id"]
            assert text_of(events) == ANSWER * 3  # a live reader gets everything
            response = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "1"})
            assert response.status_code == 410 and "GET /sessions/" in response.json()["error"]
            tail = events[-2].id or ""
            with client.stream(
                "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": tail}
            ) as kept:
                assert [e.event for e in parse_sse(kept.iter_lines())] == ["done"]
            time.sleep(0.5)
            assert client.get(f"/runs/{run_id}/events").status_code == 404
            stats = client.get("/stats").json()["runs"]
            assert stats["kept"] == 0 and stats["active"] == 0
    finally:
        served.close()
        agent.close()


def test_stopping_the_server_ends_open_streams_with_the_partial_answer_stored(
    model: FakeModelServer,
) -> None:
    agent = make_agent(model)
    served = Served(agent)
    model.enqueue_text(ANSWER, chunk_size=7, delay=0.5)  # ~20 s if nobody stopped it
    got: list[Event] = []

    def read() -> None:
        with served.client() as client:
            body = {"session": "stopping", "message": "slow"}
            with client.stream("POST", "/chat", json=body) as response:
                got.extend(parse_sse(response.iter_lines()))

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.monotonic() + 10
    while not agent.manager.live_ids():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(1.2)  # a few chunks arrive
    started = time.monotonic()
    served.close()
    assert time.monotonic() - started < 5  # did not wait for the 20 s answer
    reader.join(5)
    assert got[-1].event == "done" and got[-1].data["interrupted"] is True
    stored = agent.manager.get("stopping").recent_messages[-1]["content"]  # type: ignore[union-attr]
    assert stored == got[-1].data["text"] + INTERRUPTED and got[-1].data["text"]
    agent.close()
