"""Record real exchanges through FakeModelServer's proxy mode, then replay them offline.

The "real" upstream is another FakeModelServer (or a tiny stdlib server), so both
legs are real HTTP and the real openai SDK parses every byte.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from jupyter_agentmem.model.adapter import (
    Event,
    TextDelta,
    describe_error,
    make_client,
    stream_chat,
)
from jupyter_agentmem.testing import Cassette, CassetteError, FakeModelServer, request_key

KEY = "sk-cassette-secret-0123456789abcdef"
USER = [{"role": "user", "content": "What is recorded?"}]
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


def chat(base_url: str, messages: list[dict[str, Any]] = USER, **kw: Any) -> list[Event]:
    client = make_client(base_url, KEY, max_retries=0)
    return list(stream_chat(client, model="gpt-rec", messages=messages, **kw))


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
def upstream() -> Iterator[FakeModelServer]:
    with FakeModelServer(default=None) as server:
        yield server


def test_record_then_replay_with_upstream_stopped(
    tmp_path: Path, upstream: FakeModelServer
) -> None:
    path = tmp_path / "cassette.json"
    upstream.enqueue_text("Hello from the real model.", chunk_size=3)
    upstream.enqueue_tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}])
    upstream.enqueue_text("A non-streamed answer.")
    other = [{"role": "user", "content": "use a tool"}]
    with FakeModelServer(record_to=str(path), upstream=upstream.base_url) as recorder:
        recorded = [chat(recorder.base_url), chat(recorder.base_url, other, tools=TOOLS)]
        client = make_client(recorder.base_url, KEY, max_retries=0)
        plain = client.chat.completions.create(model="gpt-rec", messages=USER)
    upstream.stop()
    assert text_of(recorded[0]) == "Hello from the real model."
    assert upstream.request_count == 3

    with FakeModelServer(replay=str(path), default=None) as player:
        replayed = [chat(player.base_url), chat(player.base_url, other, tools=TOOLS)]
        client = make_client(player.base_url, KEY, max_retries=0)
        again = client.chat.completions.create(model="gpt-rec", messages=USER)
    assert replayed == recorded
    assert again.choices[0].message.content == plain.choices[0].message.content
    assert again.model_dump() == plain.model_dump()

    document = json.loads(path.read_text())
    assert document["format"] == "jupyter-agentmem-cassette"
    assert len(document["interactions"]) == 3
    first = document["interactions"][0]
    assert first["request"]["model"] == "gpt-rec" and "stream_options" not in first["request"]
    assert first["response"]["chunks"][-1] == "[DONE]"
    assert list(tmp_path.iterdir()) == [path]  # atomic save leaves no temp file


def test_proxy_streams_as_it_arrives(tmp_path: Path, upstream: FakeModelServer) -> None:
    upstream.enqueue_text("abcdefghij", chunk_size=1, delay=0.05)
    path = tmp_path / "c.json"
    with FakeModelServer(record_to=str(path), upstream=upstream.base_url) as recorder:
        client = make_client(recorder.base_url, KEY, max_retries=0)
        start = time.perf_counter()
        arrivals = [
            time.perf_counter() - start
            for e in stream_chat(client, model="m", messages=USER)
            if isinstance(e, TextDelta)
        ]
    assert len(arrivals) == 10
    assert arrivals[-1] - arrivals[0] > 0.3  # relayed as it arrives, not buffered


class _EchoAuth(BaseHTTPRequestHandler):
    """An upstream that echoes the Authorization header back (a worst case for leaks)."""

    seen: list[str] = []  # noqa: RUF012 - test-only class state

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        auth = self.headers.get("Authorization", "")
        _EchoAuth.seen.append(auth)
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        events = [
            {**chunk, "choices": [{"index": 0, "delta": {"content": f"you sent {auth}"}}]},
            {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_authorization_is_forwarded_but_never_written(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoAuth)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    path = tmp_path / "c.json"
    try:
        upstream_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        with FakeModelServer(record_to=str(path), upstream=upstream_url) as recorder:
            events = chat(recorder.base_url)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert _EchoAuth.seen == [f"Bearer {KEY}"]
    assert text_of(events) == f"you sent Bearer {KEY}"  # the client got the real bytes
    stored = path.read_text()
    assert KEY not in stored and "you sent Bearer ***" in stored


def test_a_key_in_the_prompt_or_a_tool_result_never_reaches_the_file(
    tmp_path: Path, upstream: FakeModelServer
) -> None:
    leaky = [
        {"role": "user", "content": f"my key is {KEY}, is that safe?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "env", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f'{{"OPENAI_API_KEY": "{KEY}"}}'},
    ]
    path = tmp_path / "c.json"
    upstream.enqueue_text("Never paste keys.")
    with FakeModelServer(record_to=str(path), upstream=upstream.base_url) as recorder:
        recorded = chat(recorder.base_url, leaky)
    assert KEY in json.dumps(upstream.requests[-1])  # the upstream got the real request
    stored = path.read_text()
    assert KEY not in stored and "my key is ***" in stored
    with FakeModelServer(replay=str(path), default=None) as player:
        assert chat(player.base_url, leaky) == recorded  # still matched on replay
    reloaded = Cassette.load(path)
    assert reloaded.interactions[0].key == request_key(
        {"model": "gpt-rec", "messages": leaky, "stream": True}
    )


def test_identical_requests_replay_in_order_then_reuse_last(
    tmp_path: Path, upstream: FakeModelServer
) -> None:
    path = tmp_path / "c.json"
    for answer in ("first", "second"):
        upstream.enqueue_text(answer)
    with FakeModelServer(record_to=str(path), upstream=upstream.base_url) as recorder:
        assert [text_of(chat(recorder.base_url)) for _ in range(2)] == ["first", "second"]
    with FakeModelServer(replay=str(path)) as player:
        answers = [text_of(chat(player.base_url)) for _ in range(3)]
    assert answers == ["first", "second", "second"]


def test_recorded_errors_replay_as_errors(tmp_path: Path, upstream: FakeModelServer) -> None:
    path = tmp_path / "c.json"
    upstream.enqueue_error(429, "Rate limit reached", headers={"retry-after": "20"})
    recorder = FakeModelServer(record_to=str(path), upstream=upstream.base_url)
    with recorder, pytest.raises(openai.RateLimitError):
        chat(recorder.base_url)
    player = FakeModelServer(replay=str(path))
    with player, pytest.raises(openai.RateLimitError) as info:
        chat(player.base_url)
    assert "Rate limit reached" in describe_error(info.value)


def test_miss_names_request_and_cassette(tmp_path: Path, upstream: FakeModelServer) -> None:
    path = tmp_path / "c.json"
    upstream.enqueue_text("recorded")
    with FakeModelServer(record_to=str(path), upstream=upstream.base_url) as recorder:
        chat(recorder.base_url)
    asked = [{"role": "user", "content": "something never recorded"}]
    player = FakeModelServer(replay=str(path))
    with player, pytest.raises(openai.NotFoundError) as info:
        chat(player.base_url, asked)
    message = describe_error(info.value)
    assert message.startswith("Replay cassette has no answer (404)")
    assert str(path) in message and "'gpt-rec'" in message
    assert "something never recorded" in message


def test_unreachable_upstream_is_a_clear_502(tmp_path: Path) -> None:
    # A bound socket that does not listen: connecting is refused, and the port cannot be
    # picked as an ephemeral source port (which could make a TCP self-connect and hang).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        recorder = FakeModelServer(record_to=str(tmp_path / "c.json"), upstream=url)
        with recorder, pytest.raises(openai.InternalServerError) as info:
            chat(recorder.base_url)
    assert info.value.status_code == 502
    assert f"Cannot reach upstream {url}" in describe_error(info.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("{not json", "not readable JSON"),
        ('{"interactions": []}', "not a jupyter-agentmem cassette"),
        (
            '{"format": "jupyter-agentmem-cassette", "version": 1, "interactions": [{}]}',
            "lacks a 'request'",
        ),
    ],
)
def test_bad_cassette_fails_at_start(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    server = FakeModelServer(replay=str(path))
    with pytest.raises(CassetteError, match=expected) as info:
        server.start()
    assert str(path) in str(info.value)
    assert not server.running
    assert isinstance(info.value, Exception)


def test_request_key_is_stable_and_ignores_noise() -> None:
    a = {"model": "m", "messages": USER, "stream": True, "temperature": None}
    b = {"stream": True, "messages": USER, "model": "m", "stream_options": {"include_usage": 1}}
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key({**a, "model": "n"})


def test_cassette_api_round_trip(tmp_path: Path) -> None:
    from jupyter_agentmem.testing import Interaction

    cassette = Cassette(tmp_path / "sub" / "c.json")
    cassette.append(Interaction({"model": "m", "messages": USER}, 200, body={"ok": 1}))
    loaded = Cassette.load(tmp_path / "sub" / "c.json")
    assert loaded.interactions == cassette.interactions and len(loaded) == 1
    assert loaded.match({"model": "m", "messages": USER}) == cassette.interactions[0]
    assert loaded.match({"model": "x", "messages": USER}) is None


def test_constructor_rejects_conflicting_modes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="together"):
        FakeModelServer(record_to=str(tmp_path / "c.json"))
    with pytest.raises(ValueError, match="not both"):
        FakeModelServer(replay="a.json", record_to="b.json", upstream="http://x/v1")


def test_stop_cuts_a_proxied_request_waiting_on_upstream(
    tmp_path: Path, upstream: FakeModelServer
) -> None:
    upstream.enqueue_hang(30)
    recorder = FakeModelServer(record_to=str(tmp_path / "c.json"), upstream=upstream.base_url)
    recorder.start()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            chat(recorder.base_url)
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 3
    while upstream.request_count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    port = recorder.port
    start = time.perf_counter()
    recorder.stop()
    caller.join(5)
    assert time.perf_counter() - start < 2
    assert not [t for t in threading.enumerate() if t.name.startswith(f"FakeModelServer:{port}")]
    assert len(outcome) == 1 and isinstance(outcome[0], openai.APIConnectionError)
    assert not (tmp_path / "c.json").exists()  # nothing complete to record


def test_upstream_drop_is_relayed_as_a_drop_and_not_recorded(
    tmp_path: Path, upstream: FakeModelServer
) -> None:
    upstream.enqueue_drop(after_chunks=2, text="cut short by upstream")
    path = tmp_path / "c.json"
    recorder = FakeModelServer(record_to=str(path), upstream=upstream.base_url)
    with recorder, pytest.raises(openai.APIConnectionError) as info:
        chat(recorder.base_url)
    assert "dropped in the middle" in describe_error(info.value)
    assert not path.exists()
