"""The provider adapter, against FakeModelServer over real HTTP with the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from jupyter_agentmem.model.adapter import (
    Event,
    Finish,
    MalformedStreamError,
    TextDelta,
    ToolCall,
    Usage,
    astream_chat,
    describe_error,
    make_async_client,
    make_client,
    stream_chat,
)
from jupyter_agentmem.testing import FakeModelServer

USER = [{"role": "user", "content": "hello"}]
KEY = "sk-test-secret-key-0123456789"


def chat(server: FakeModelServer, **kwargs: Any) -> list[Event]:
    client = make_client(server.base_url, KEY, timeout=kwargs.pop("timeout", 5.0), max_retries=0)
    return list(stream_chat(client, model=kwargs.pop("model", "m"), messages=USER, **kwargs))


def failure(server: FakeModelServer, **kwargs: Any) -> BaseException:
    with pytest.raises(Exception) as info:
        chat(server, **kwargs)
    return info.value


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# -- events ---------------------------------------------------------------------------------


def test_text_stream_usage_and_finish(srv: FakeModelServer) -> None:
    srv.enqueue_text("Hello, streaming world!", chunk_size=3)
    events = chat(srv)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 8 and text_of(events) == "Hello, streaming world!"
    assert events[-2:] == [Usage(2, 6, 8), Finish("stop")]
    request = srv.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}


def test_options_reach_the_server(srv: FakeModelServer) -> None:
    srv.enqueue_text("ok", usage=False, finish_reason="length")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    events = chat(srv, tools=tools, temperature=0.2, max_tokens=7, extra={"seed": 3})
    assert events[-1] == Finish("length") and not any(isinstance(e, Usage) for e in events)
    sent = srv.requests[0]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.2, 7, 3)
    assert sent["tools"] == tools


def test_parallel_tool_calls_are_assembled(srv: FakeModelServer) -> None:
    args = {"city": "Paris", "days": 3, "note": "x" * 40}
    srv.enqueue_tool_calls(
        [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "weather", "arguments": args}],
        text="Let me check.",
        chunk_size=4,
    )
    events = chat(srv)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [
        ToolCall("call_1", "add", json.dumps({"a": 1, "b": 2})),
        ToolCall("call_2", "weather", json.dumps(args)),
    ]
    assert text_of(events) == "Let me check."
    kinds = [type(e).__name__ for e in events if not isinstance(e, TextDelta)]
    assert kinds == ["ToolCall", "ToolCall", "Usage", "Finish"]
    assert events[-1] == Finish("tool_calls")


def test_llama_cpp_style_repeated_names_are_not_concatenated(srv: FakeModelServer) -> None:
    srv.enqueue_tool_calls(
        [{"name": "lookup", "arguments": '{"q": "a long query"}', "id": "abc"}],
        repeat_name=True,
        chunk_size=3,
    )
    calls = [e for e in chat(srv) if isinstance(e, ToolCall)]
    assert calls == [ToolCall("abc", "lookup", '{"q": "a long query"}')]


def test_stream_options_rejected_is_retried_once_without(srv: FakeModelServer) -> None:
    srv.enqueue_error(400, "Unrecognized request argument supplied: stream_options")
    srv.enqueue_text("fine", usage=False)
    srv.enqueue_text("again", usage=False)
    client = make_client(srv.base_url, KEY, max_retries=0)
    assert text_of(list(stream_chat(client, model="m", messages=USER))) == "fine"
    assert text_of(list(stream_chat(client, model="m", messages=USER))) == "again"
    sent = srv.requests
    assert "stream_options" in sent[0]
    assert "stream_options" not in sent[1] and "stream_options" not in sent[2]  # remembered


def test_a_real_bad_request_is_raised_after_one_retry(srv: FakeModelServer) -> None:
    srv.enqueue_error(400, "messages: field required")
    srv.enqueue_error(400, "messages: field required")
    exc = failure(srv)
    assert isinstance(exc, openai.BadRequestError)
    assert describe_error(exc).startswith("The model server refused the request (400)")
    assert srv.request_count == 2


def test_early_close_closes_the_http_response(srv: FakeModelServer) -> None:
    srv.enqueue_text("y" * 400, chunk_size=1, delay=0.01)
    client = make_client(srv.base_url, KEY, max_retries=0)
    events = stream_chat(client, model="m", messages=USER)
    assert next(events) == TextDelta("y")
    events.close()  # what a `break` or a KeyboardInterrupt in the consumer ends up doing
    deadline = time.monotonic() + 3
    while srv.client_disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.client_disconnects == 1


def test_keyboard_interrupt_in_consumer_closes_the_stream(srv: FakeModelServer) -> None:
    srv.enqueue_text("z" * 400, chunk_size=1, delay=0.01)
    client = make_client(srv.base_url, KEY, max_retries=0)
    with pytest.raises(KeyboardInterrupt):
        for n, _ in enumerate(stream_chat(client, model="m", messages=USER)):
            if n == 2:
                raise KeyboardInterrupt
    deadline = time.monotonic() + 3
    while srv.client_disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.client_disconnects == 1


# -- sync / async parity --------------------------------------------------------------------

Script = Callable[[FakeModelServer], None]
SCRIPTS: list[Script] = [
    lambda s: s.enqueue_text("Parity check, with several chunks.", chunk_size=5),
    lambda s: s.enqueue_tool_calls(
        [{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": [1, 2]}}],
        text="thinking",
    ),
    lambda s: s.enqueue_text("no usage", usage=False, finish_reason="length"),
    lambda s: (s.enqueue_error(422, "stream_options unsupported"), s.enqueue_text("retried")),
]


def test_async_twin_gives_identical_events() -> None:
    def sync_run() -> list[list[Event]]:
        with FakeModelServer(default=None) as server:
            client = make_client(server.base_url, KEY, max_retries=0)
            out = []
            for script in SCRIPTS:
                script(server)
                out.append(list(stream_chat(client, model="m", messages=USER)))
            return out

    async def async_run() -> list[list[Event]]:
        with FakeModelServer(default=None) as server:
            client = make_async_client(server.base_url, KEY, max_retries=0)
            out = []
            for script in SCRIPTS:
                script(server)
                out.append([e async for e in astream_chat(client, model="m", messages=USER)])
            await client.close()
            return out

    sync_events = sync_run()
    assert sync_events == asyncio.run(async_run())
    assert all(isinstance(events[-1], Finish) for events in sync_events)


def test_async_early_close_and_errors(srv: FakeModelServer) -> None:
    async def run() -> BaseException:
        client = make_async_client(srv.base_url, KEY, max_retries=0)
        srv.enqueue_text("q" * 400, chunk_size=1, delay=0.01)
        events = astream_chat(client, model="m", messages=USER)
        assert await events.__anext__() == TextDelta("q")
        await events.aclose()
        srv.enqueue_malformed()
        try:
            _ = [e async for e in astream_chat(client, model="m", messages=USER)]
        except MalformedStreamError as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    exc = asyncio.run(run())
    assert "malformed stream" in describe_error(exc)
    deadline = time.monotonic() + 3
    while srv.client_disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.client_disconnects == 1


# -- errors ---------------------------------------------------------------------------------


def test_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(openai.OpenAIError) as info:
        make_client(None, None)
    assert describe_error(info.value) == (
        "No API key: set OPENAI_API_KEY, or `%agent_memory config base_url=... model=...` "
        "(or model=demo for the offline demo model)"
    )


def test_local_base_url_needs_no_key(srv: FakeModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    srv.enqueue_text("local")
    client = make_client(srv.base_url, None, max_retries=0)
    assert text_of(list(stream_chat(client, model="m", messages=USER))) == "local"


def test_rate_limited(srv: FakeModelServer) -> None:
    srv.enqueue_error(429, f"Rate limit reached for key {KEY}")
    exc = failure(srv)
    assert isinstance(exc, openai.RateLimitError)
    message = describe_error(exc)
    assert message.startswith("Rate limited (429) after 0 retries")
    assert KEY not in message and "sk-test" not in message


def test_rate_limited_after_retries(srv: FakeModelServer) -> None:
    for _ in range(2):
        srv.enqueue_error(429, "slow down", headers={"retry-after-ms": "10"})
    client = make_client(srv.base_url, KEY, max_retries=1)
    with pytest.raises(openai.RateLimitError) as info:
        list(stream_chat(client, model="m", messages=USER))
    assert "after 1 retries" in describe_error(info.value)


def test_key_rejected(srv: FakeModelServer) -> None:
    srv.enqueue_error(401, "Incorrect API key provided: sk-test-s*************6789.")
    message = describe_error(failure(srv), api_key=KEY)
    assert message.startswith("The API key was rejected (401)")
    assert "OPENAI_API_KEY" in message and "sk-test" not in message


def test_unknown_model(srv: FakeModelServer) -> None:
    srv.enqueue_error(404, "The model `gpt-9` does not exist")
    message = describe_error(failure(srv, model="gpt-9"))
    assert "unknown model 'gpt-9'" in message and srv.base_url in message


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors(srv: FakeModelServer, status: int) -> None:
    srv.enqueue_error(status, "upstream exploded")
    message = describe_error(failure(srv))
    assert message.startswith(f"The model server failed ({status})")
    assert "upstream exploded" in message


def test_connection_refused() -> None:
    with socket.socket() as sock:  # bound, not listening: refused, and no TCP self-connect
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = make_client(f"http://127.0.0.1:{port}/v1", KEY, max_retries=0, timeout=5)
        with pytest.raises(openai.APIConnectionError) as info:
            list(stream_chat(client, model="m", messages=USER))
    message = describe_error(info.value)
    assert message.startswith(f"Cannot reach http://127.0.0.1:{port}/v1: is the server running?")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://user:pw-secret@127.0.0.1:{sock.getsockname()[1]}/v1"
        client = make_client(url, KEY, max_retries=0, timeout=5)
        with pytest.raises(openai.APIConnectionError) as info:
            list(stream_chat(client, model="m", messages=USER))
    assert "pw-secret" not in describe_error(info.value)


def test_timeout(srv: FakeModelServer) -> None:
    srv.enqueue_hang(10)
    start = time.perf_counter()
    exc = failure(srv, timeout=0.3)
    assert time.perf_counter() - start < 2
    assert isinstance(exc, openai.APITimeoutError)
    assert "timed out after 0.3s" in describe_error(exc)


def test_drop_mid_stream(srv: FakeModelServer) -> None:
    srv.enqueue_drop(after_chunks=2, text="partial answer that never ends")
    client = make_client(srv.base_url, KEY, max_retries=0)
    received: list[Event] = []
    with pytest.raises(openai.APIConnectionError) as info:
        for event in stream_chat(client, model="m", messages=USER):
            received.append(event)
    assert text_of(received) == "partial "
    assert "dropped in the middle of the answer" in describe_error(info.value)


def test_malformed_chunk(srv: FakeModelServer) -> None:
    srv.enqueue_malformed()
    exc = failure(srv)
    assert isinstance(exc, MalformedStreamError)
    assert describe_error(exc).startswith("The server sent a malformed stream")
    assert describe_error(exc.__cause__).startswith("The server sent a malformed stream")  # type: ignore[arg-type]


def test_describe_error_never_leaks_a_key() -> None:
    message = describe_error(RuntimeError(f"boom with Bearer {KEY} and {KEY}"), api_key=KEY)
    assert KEY not in message and "sk-test" not in message


# -- throughput -----------------------------------------------------------------------------


def test_throughput_through_the_sdk(srv: FakeModelServer) -> None:
    n = 2000
    srv.enqueue_text("x" * n, chunk_size=1)
    client = make_client(srv.base_url, KEY, max_retries=0)
    start = time.perf_counter()
    events = list(stream_chat(client, model="m", messages=USER))
    elapsed = time.perf_counter() - start
    assert len(events) == n + 2
    assert n / elapsed > 500  # ~3,600/s measured on a loaded 2-core box; a sanity floor
