"""The HTTP face on a real uvicorn with real clients: SSE chat, sessions, tenants, bad input."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_agentmem.errors import ServeError, TokensFileError
from jupyter_agentmem.model.tools import ToolRegistry
from jupyter_agentmem.serve.auth import Tenants, check_bind, read_tokens_file
from jupyter_agentmem.testing import FakeModelServer

from .serve_helpers import ALICE, BOB, TOKENS, Served, chat, make_agent, parse_sse, text_of


@pytest.fixture(scope="module")
def served(model: FakeModelServer) -> Iterator[Served]:
    registry = ToolRegistry()

    def rows(n: int) -> list[dict[str, Any]]:
        """Many rows."""
        return [{"id": i, "text": "row text " * 4} for i in range(n)]

    registry.register(rows)
    agent = make_agent(model, registry)
    srv = Served(agent, tokens=TOKENS)
    yield srv
    srv.close()
    agent.close()


@pytest.fixture
def alice(served: Served) -> Iterator[httpx.Client]:
    with served.client(ALICE) as client:
        yield client


@pytest.fixture
def bob(served: Served) -> Iterator[httpx.Client]:
    with served.client(BOB) as client:
        yield client


def test_chat_streams_ids_and_done_after_store(model: FakeModelServer, alice: httpx.Client) -> None:
    answer = "Streaming answers arrive in many small pieces."
    model.enqueue_text(answer, chunk_size=3)
    events = chat(alice, "first", "hello there")
    assert events[0].event == "run" and events[0].data["session"] == "first"
    run_id = events[0].data["run_id"]
    assert [e.event for e in events[1:-1]] == ["delta"] * (len(events) - 2)
    done = events[-1]
    assert done.event == "done" and done.data["run_id"] == run_id
    assert text_of(events) == done.data["text"] == answer
    assert done.data["usage"]["completion_tokens"] > 0
    ids = [int(e.id or 0) for e in events]
    assert ids == sorted(set(ids)) and ids[0] == 1
    # stored by the time `done` arrived, and the session is free for the next run at once
    view = alice.get("/sessions/first").json()
    assert view["messages"] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": answer},
    ]
    assert view["turns"] == 1 and view["busy"] is False
    model.enqueue_text("second answer")
    assert chat(alice, "first", "again")[-1].data["text"] == "second answer"
    assert alice.get("/sessions/first").json()["turns"] == 2


def test_tool_calls_and_truncated_results(model: FakeModelServer, alice: httpx.Client) -> None:
    model.enqueue_tool_calls([{"name": "rows", "arguments": {"n": 300}}])
    model.enqueue_text("There are 300 rows.")
    events = chat(alice, "tools", "how many rows?")
    kinds = [e.event for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    call = next(e for e in events if e.event == "tool_call").data
    assert call["name"] == "rows" and '"n": 300' in call["arguments"]
    result = next(e for e in events if e.event == "tool_result").data
    assert result["id"] == call["id"] and result["error"] is None
    assert len(result["content"]) <= 200 and result["saved_chars"] > 0
    assert events[-1].data["text"] == "There are 300 rows." == text_of(events)


def test_tenants_never_see_each_other(
    model: FakeModelServer, alice: httpx.Client, bob: httpx.Client
) -> None:
    model.enqueue_text("alice's secret plan")
    run_id = chat(alice, "shared-name", "my plan")[0].data["run_id"]
    assert "shared-name" in [s["session"] for s in alice.get("/sessions").json()["sessions"]]
    assert "shared-name" not in [s["session"] for s in bob.get("/sessions").json()["sessions"]]
    for response in (
        bob.get("/sessions/shared-name"),
        bob.delete("/sessions/shared-name"),
        bob.get(f"/runs/{run_id}/events"),
    ):
        assert response.status_code == 404, response.text
        assert "error" in response.json() and "alice" not in response.text
    # the same id in bob's namespace is a new, separate conversation
    model.enqueue_text("bob's answer")
    chat(bob, "shared-name", "hello")
    seen_by_model = model.requests[-1]["messages"]
    assert all("plan" not in str(m.get("content")) for m in seen_by_model)
    assert (
        alice.get("/sessions/shared-name").json()["messages"][1]["content"] == "alice's secret plan"
    )
    assert bob.get("/sessions/shared-name").json()["messages"][1]["content"] == "bob's answer"
    assert bob.delete("/sessions/shared-name").json() == {"deleted": "shared-name"}
    assert alice.get("/sessions/shared-name").status_code == 200
    assert bob.get("/sessions/shared-name").status_code == 404


def test_tokens_required_except_healthz(served: Served) -> None:
    with served.client() as anonymous, served.client("not-a-known-token-at-all") as wrong:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        for client in (anonymous, wrong):
            for response in (
                client.get("/sessions"),
                client.get("/stats"),
                client.post("/chat", json={"session": "s", "message": "hi"}),
            ):
                assert response.status_code == 401
                assert "Bearer" in response.json()["error"]
                assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session": "s"}, "body.message"),
        ({"message": "hi"}, "body.session"),
        ({"session": "s", "message": 42}, "body.message"),
        ({"session": "s", "message": ["a"]}, "body.message"),
        ({"session": "", "message": "hi"}, "body.session"),
        ({"session": "s", "message": "hi", "tools": "rows"}, "body.tools"),
        ({"session": "s", "message": "hi", "surprise": 1}, "body.surprise"),
    ],
)
def test_bad_bodies_are_422_naming_the_field(
    alice: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = alice.post("/chat", json=body)
    assert response.status_code == 422
    assert response.json()["error"].startswith(field)


def test_malformed_json_is_422(alice: httpx.Client) -> None:
    response = alice.post(
        "/chat", content=b'{"session": "s", "mess', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "JSON decode error" in response.json()["error"] and response.json()["error"].startswith(
        "body"
    )


def test_body_over_limit_is_413_before_it_is_read(served: Served, model: FakeModelServer) -> None:
    big = b'{"session": "s", "message": "' + b"x" * (1024 * 1024) + b'"}'
    with served.client(ALICE) as client:
        response = client.post("/chat", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert "1048576 bytes" in response.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"session": "s", "message": "'
            for _ in range(40):
                yield b"y" * 32768
            yield b'"}'

        response = client.post(
            "/chat", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
    # a declared length over the limit is refused without the body being sent at all
    import socket

    host, port = served.server.host, served.server.port
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + ALICE.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert model.pending == 0


def test_unknown_session_is_404(alice: httpx.Client) -> None:
    for response in (alice.get("/sessions/never-made"), alice.delete("/sessions/never-made")):
        assert response.status_code == 404
        assert "POST /chat" in response.json()["error"]


@pytest.mark.parametrize(
    "script",
    ["401", "429", "500", "drop", "hang"],
)
def test_model_errors_are_an_error_event_and_nothing_is_stored(
    model: FakeModelServer, alice: httpx.Client, script: str
) -> None:
    session = f"broken-{script}"
    model.enqueue_text("a good first answer")
    chat(alice, session, "first")
    if script == "drop":
        model.enqueue_drop(after_chunks=2, text="half an answer that never ends")
    elif script == "hang":
        model.enqueue_hang(10.0)  # the agent's timeout is 3 s
    else:
        model.enqueue_error(int(script), f"upstream said {script}")
    events = chat(alice, session, "second")
    assert events[0].event == "run" and events[-1].event == "error"
    assert "done" not in [e.event for e in events]
    assert events[-1].data["message"]
    view = alice.get(f"/sessions/{session}").json()
    assert [m["content"] for m in view["messages"]] == ["first", "a good first answer"]
    assert view["busy"] is False


def test_api_key_is_never_returned(
    model: FakeModelServer, alice: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-DO-NOT-LEAK-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    model.enqueue_error(401, f"Incorrect API key provided: {secret}")
    events = chat(alice, "keyed", "hi")
    assert events[-1].event == "error"
    bodies = [str(e.data) for e in events] + [alice.get("/stats").text, alice.get("/sessions").text]
    assert all(secret not in body and secret[-8:] not in body for body in bodies)


def test_stats_has_manager_and_memory_figures(alice: httpx.Client) -> None:
    stats = alice.get("/stats").json()
    assert stats["manager"]["sessions_in_memory"] >= 1
    assert stats["memory"]["rss_bytes"] > 0 and stats["memory"]["limit_bytes"] > 0
    assert stats["runs"]["started"] >= stats["runs"]["done"] >= 1


def test_curl_streams_events(served: Served, model: FakeModelServer) -> None:
    model.enqueue_text("curl sees this streamed", chunk_size=4)
    out = subprocess.run(
        [
            "curl",
            "-sN",
            "--max-time",
            "10",
            "-H",
            f"Authorization: Bearer {ALICE}",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"session": "curl", "message": "hi"}',
            f"{served.url}/chat",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    events = list(parse_sse(iter(out.splitlines())))
    assert events[0].event == "run" and events[-1].event == "done"
    assert text_of(events) == "curl sees this streamed"


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# team tokens\n\nabcdefghijklmnop0001 alice  # laptop\nabcdefghijklmnop0002 bob\n"
    )
    assert read_tokens_file(path) == {
        "abcdefghijklmnop0001": "alice",
        "abcdefghijklmnop0002": "bob",
    }
    for text, words in [
        ("abcdefghijklmnop0001\n", "TOKEN TENANT"),
        ("short alice\n", "16 characters"),
        ("abcdefghijklmnop0001 bad/name\n", "tenant names"),
        ("abcdefghijklmnop0001 a\nabcdefghijklmnop0001 b\n", "already"),
        ("# nothing\n", "no `TOKEN TENANT`"),
    ]:
        path.write_text(text)
        with pytest.raises(TokensFileError, match=words):
            read_tokens_file(path)


def test_no_tokens_means_loopback_only() -> None:
    open_ = Tenants(None)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_bind(host, open_)
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        with pytest.raises(ServeError, match="--tokens-file"):
            check_bind(host, open_)
    check_bind("0.0.0.0", Tenants(TOKENS))


class Namespaced:
    """A kernel-style naming: local names live under one notebook's prefix."""

    def key(self, name: str) -> str:
        return f"notebook:a.ipynb::{name}"

    def name(self, key: str) -> str | None:
        prefix = "notebook:a.ipynb::"
        return key[len(prefix) :] if key.startswith(prefix) else None


def test_local_ids_follow_the_kernels_naming(model: FakeModelServer) -> None:
    agent = make_agent(model)
    agent.manager.get_or_create("notebook:b.ipynb::other")  # another notebook's session
    srv = Served(agent, local_ids=Namespaced())
    try:
        with srv.client() as client:
            model.enqueue_text("namespaced")
            chat(client, "mine", "hi")
            assert "notebook:a.ipynb::mine" in agent.manager.live_ids()
            assert [s["session"] for s in client.get("/sessions").json()["sessions"]] == ["mine"]
            assert client.get("/sessions/mine").json()["messages"][1]["content"] == "namespaced"
            assert client.get("/sessions/other").status_code == 404
    finally:
        srv.close()
        agent.close()
