"""The adapter reads the event stream itself: SSE corners, error events, broken bodies.

Against FakeModelServer over real HTTP with the real openai SDK making the request;
where the SDK's own ``Stream`` defines the behaviour (error events), it is the oracle.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest

from jupyter_agentmem.model.adapter import (
    Event,
    Finish,
    MalformedStreamError,
    TextDelta,
    Usage,
    astream_chat,
    describe_error,
    make_async_client,
    make_client,
    stream_chat,
)
from jupyter_agentmem.model.sse import SSELines
from jupyter_agentmem.testing import FakeModelServer

USER = [{"role": "user", "content": "hello"}]
KEY = "sk-test-secret-key-0123456789"


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra})


def run_both(server: FakeModelServer, script: Any) -> tuple[list[Event], list[Event]]:
    """The same scripted reply through the sync and the async twin."""
    script()
    sync = list(
        stream_chat(make_client(server.base_url, KEY, max_retries=0), model="m", messages=USER)
    )

    async def arun() -> list[Event]:
        client = make_async_client(server.base_url, KEY, max_retries=0)
        try:
            return [e async for e in astream_chat(client, model="m", messages=USER)]
        finally:
            await client.close()

    script()
    return sync, asyncio.run(arun())


# -- the SSE format -------------------------------------------------------------------------


def test_sse_lines_follow_the_spec() -> None:
    sse = SSELines()
    fed = [sse.feed(line) for line in [": comment", "event: x", "data: a", "data:b", "id: 1", ""]]
    assert fed == [None] * 5 + ["a\nb"]  # data lines joined with "\n"; one optional space cut
    assert [sse.feed(line) for line in ["event: ping", "retry: 5", ""]] == [None, None, None]
    assert [sse.feed(line) for line in ["data", ""]] == [None, ""]  # a bare field: empty value


def test_comments_fields_multiline_data_and_split_chunks(srv: FakeModelServer) -> None:
    usage = chunk(usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
    two_lines = chunk("two ").replace(', "delta"', ',\ndata: "delta"')  # one JSON, two data lines
    split = "data: " + chunk("split ")
    frames = [
        ": keep-alive\n\n",
        "event: message\nid: 7\nretry: 1000\ndata: " + chunk("one ") + "\n\n",
        "data: " + two_lines + "\n\n",
        split[:17],  # one line across two HTTP chunks
        split[17:] + "\r\n\r\n",  # CRLF line endings
        "event: ping\n\n",  # no data: not an event
        "data: " + chunk("end", "stop") + "\rdata: \r\r",  # CR line endings, empty data line
        "data: " + usage + "\n\n",
        "data: [DONE]\n\n",
        "data: not json, but after [DONE]\n\n",
    ]
    sync, async_ = run_both(srv, lambda: srv.enqueue_sse(*frames))
    assert sync == [
        TextDelta("one "),
        TextDelta("two "),
        TextDelta("split "),
        TextDelta("end"),
        Usage(3, 2, 5),
        Finish("stop"),
    ]
    assert async_ == sync


def test_an_empty_data_event_is_malformed(srv: FakeModelServer) -> None:
    srv.enqueue_sse("data: " + chunk("ok ") + "\n\n", "data:\n\n", "data: [DONE]\n\n")
    with pytest.raises(MalformedStreamError):
        list(stream_chat(make_client(srv.base_url, KEY, max_retries=0), model="m", messages=USER))


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "{not json"])
def test_data_that_is_not_a_json_object_is_malformed(srv: FakeModelServer, data: str) -> None:
    srv.enqueue_sse("data: " + chunk("ok ") + "\n\n", f"data: {data}\n\n", "data: [DONE]\n\n")
    client = make_client(srv.base_url, KEY, max_retries=0)
    received: list[Event] = []
    with pytest.raises(MalformedStreamError) as info:
        for event in stream_chat(client, model="m", messages=USER):
            received.append(event)
    assert received == [TextDelta("ok ")]
    assert describe_error(info.value).startswith("The server sent a malformed stream")


def test_a_chunk_of_the_wrong_shape_is_malformed(srv: FakeModelServer) -> None:
    srv.enqueue_sse('data: {"choices": [{"delta": "not an object"}]}\n\n', "data: [DONE]\n\n")
    with pytest.raises(MalformedStreamError, match="unexpected shape"):
        list(stream_chat(make_client(srv.base_url, KEY, max_retries=0), model="m", messages=USER))


# -- failures after the 200 -----------------------------------------------------------------


def test_error_event_mid_stream_raises_what_the_sdk_raises(srv: FakeModelServer) -> None:
    message = "The model is overloaded, retry later."

    def script() -> None:
        srv.enqueue_stream_error(message, after_chunks=2, text="partial answer", code="overload")

    script()
    client = make_client(srv.base_url, KEY, max_retries=0)
    with pytest.raises(openai.APIError) as sdk:  # the oracle: the SDK's own Stream
        list(client.chat.completions.create(model="m", messages=USER, stream=True))  # type: ignore[arg-type]
    script()
    received: list[Event] = []
    with pytest.raises(openai.APIError) as ours:
        for event in stream_chat(client, model="m", messages=USER):
            received.append(event)
    assert type(ours.value) is type(sdk.value) is openai.APIError
    assert ours.value.message == sdk.value.message == message
    assert (
        ours.value.body
        == sdk.value.body
        == {
            "message": message,
            "type": "server_error",
            "code": "overload",
        }
    )
    assert str(ours.value.request.url).endswith("/chat/completions")
    assert "".join(e.text for e in received if isinstance(e, TextDelta)) == "partial "
    assert describe_error(ours.value) == describe_error(sdk.value) == f"APIError: {message}"


def test_error_event_is_the_same_in_the_async_twin(srv: FakeModelServer) -> None:
    async def run() -> BaseException:
        client = make_async_client(srv.base_url, KEY, max_retries=0)
        srv.enqueue_stream_error("boom", after_chunks=1)
        try:
            _ = [e async for e in astream_chat(client, model="m", messages=USER)]
        except openai.APIError as exc:
            return exc
        finally:
            await client.close()
        raise AssertionError("no error")

    exc = asyncio.run(run())
    assert type(exc) is openai.APIError and describe_error(exc) == "APIError: boom"


def test_a_read_timeout_mid_stream_is_the_sdk_timeout(srv: FakeModelServer) -> None:
    srv.enqueue_sse(*(f"data: {chunk(c)}\n\n" for c in ("abcd", "efgh")), delay=2.0)
    client = make_client(srv.base_url, KEY, timeout=0.3, max_retries=0)
    received: list[Event] = []
    with pytest.raises(openai.APITimeoutError) as info:
        for event in stream_chat(client, model="m", messages=USER):
            received.append(event)
    assert received == [TextDelta("abcd")]
    assert "timed out after 0.3s" in describe_error(info.value)


def test_json_that_only_the_stdlib_reads_is_still_read(srv: FakeModelServer) -> None:
    """orjson (the fast path) refuses NaN; the SDK's ``json`` took it, so we do too."""
    srv.enqueue_sse("data: " + chunk("fine").replace("{", '{"score": NaN, ', 1) + "\n\n")
    events = list(
        stream_chat(make_client(srv.base_url, KEY, max_retries=0), model="m", messages=USER)
    )
    assert events == [TextDelta("fine"), Finish(None)]


# -- the request ----------------------------------------------------------------------------


def test_the_request_body_is_the_one_the_sdk_builds(srv: FakeModelServer) -> None:
    """Messages and tools travel in ``extra_body`` (no per-key walk); the body must not change."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    messages = [{"role": "system", "content": "be brief"}, *USER]
    client = make_client(srv.base_url, KEY, max_retries=0)
    srv.enqueue_text("sdk")
    list(
        client.chat.completions.create(
            model="m",
            messages=messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            temperature=0.5,
            max_tokens=9,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"seed": 3},
        )
    )
    srv.enqueue_text("ours")
    options = {"temperature": 0.5, "max_tokens": 9, "extra": {"seed": 3}}
    list(stream_chat(client, model="m", messages=messages, tools=tools, **options))  # type: ignore[arg-type]
    assert srv.requests[1] == srv.requests[0]
    assert srv.requests[1]["messages"] == messages and srv.requests[1]["tools"] == tools


def test_an_event_that_never_ends_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """``data:`` lines without the blank line that ends an event must not grow forever."""
    from jupyter_agentmem.model import sse

    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 1_000)
    lines = SSELines()
    with pytest.raises(ValueError, match="1,000 chars"):
        for _ in range(1_000):
            lines.feed("data: " + "x" * 99)
    assert len(lines._data) < 11  # stopped at the bound, not at the end of the body
    fresh = SSELines()
    assert [fresh.feed(x) for x in ["data: " + "y" * 500, ""]] == [None, "y" * 500]


def test_a_server_streaming_one_endless_event_gets_a_clear_error(
    srv: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_agentmem.model import sse

    monkeypatch.setattr(sse, "MAX_EVENT_CHARS", 10_000)
    srv.enqueue_sse(*(["data: " + "z" * 1_000 + "\n"] * 50))
    client = make_client(srv.base_url, KEY)
    with pytest.raises(MalformedStreamError, match="more than 10,000 chars"):
        list(stream_chat(client, model="m", messages=USER))
