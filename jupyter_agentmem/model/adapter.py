"""The provider adapter: an openai SDK streamed response in, our own small events out.

One small contract (as in simonw/llm): :func:`stream_chat` is a generator of
:data:`Event` values. Conversation, tools, rendering and memory are written once
against these events and never see an SDK type, so quirks of OpenAI-compatible
servers are absorbed here:

* tool calls arrive as fragments keyed by ``index``; llama.cpp repeats the
  function name in every fragment, so the name is taken from the first one;
* some servers reject ``stream_options`` with a 400; we retry once without it
  (and remember, per client, that this server does not take it);
* a consumer that stops early (``break``, ``KeyboardInterrupt``) closes the HTTP
  response, so the server stops generating and the socket is freed;
* the SDK sends the request (auth, base_url, retries, timeouts, its HTTP errors),
  but the body is read line by line (:mod:`.sse`) and each chunk decoded into a
  plain dict: the SDK's per-chunk pydantic models cost ~5x the rest of the path.

:func:`describe_error` (in ``failures``) turns any failure into one line that says what to do.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import openai

from jupyter_agentmem import fastjson

from .clients import make_async_client, make_client
from .failures import (
    NO_KEY_HINT,
    MalformedStreamError,
    broken_body,
    describe_error,
    stream_error,
    transport_errors,
)
from .sse import SSELines

__all__ = [
    "NO_KEY_HINT",
    "Event",
    "Finish",
    "MalformedStreamError",
    "TextDelta",
    "ToolCall",
    "Usage",
    "astream_chat",
    "describe_error",
    "make_async_client",
    "make_client",
    "stream_chat",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, in arrival order."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call (arguments fully assembled, a JSON string as sent by the model)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the server (only if it supports ``include_usage``)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class Finish:
    """End of the answer; ``reason`` is the server's ``finish_reason`` (e.g. ``stop``)."""

    reason: str | None


Event = TextDelta | ToolCall | Usage | Finish


# -- streaming ----------------------------------------------------------------------------------

# Clients whose server rejected ``stream_options`` once: do not send it again.
_NO_STREAM_OPTIONS: weakref.WeakSet[Any] = weakref.WeakSet()

#: How long the async twin reads on after ``[DONE]`` to keep an HTTP/1.1 connection.
_DRAIN_SECONDS = 0.1


class _Exchange:
    """One streamed completion, sans I/O: the request to send, whether a refusal is worth
    a retry without ``stream_options``, and the body's lines folded into events.

    :func:`stream_chat` and :func:`astream_chat` are its two thin drivers, so they
    agree on events, order and errors by construction. Chunks are decoded with
    ``json`` into plain dicts, never into the SDK's pydantic models: building one
    per chunk was most of the cost of streaming (see ``benchmarks/bench_render``).
    """

    def __init__(self, client: Any, arguments: Mapping[str, Any]) -> None:
        self.client = client
        self.arguments = arguments
        self.with_usage = client not in _NO_STREAM_OPTIONS
        self.calls: dict[int, _PendingCall] = {}
        self.usage: Usage | None = None
        self.reason: str | None = None
        self.http_request: Any = None
        self._sse = SSELines()

    def request(self) -> dict[str, Any]:
        """Keyword arguments for ``chat.completions.create``.

        The conversation and tool schemas go in ``extra_body`` (the SDK merges it
        into the JSON body, same keys, same values) rather than ``messages=``/``tools=``:
        the SDK walks typed parameters key by key to rename aliases, which chat
        messages and tools do not have, at ~0.3 ms per KB of prompt before the
        first byte is sent. ``extra`` goes into the body last, as before.
        """
        a = self.arguments
        kwargs: dict[str, Any] = {"model": a["model"], "messages": [], "stream": True}
        if self.with_usage:
            kwargs["stream_options"] = {"include_usage": True}
        if a["temperature"] is not None:
            kwargs["temperature"] = a["temperature"]
        if a["max_tokens"] is not None:
            kwargs["max_tokens"] = a["max_tokens"]
        body: dict[str, Any] = {"messages": list(a["messages"])}
        if a["tools"]:
            body["tools"] = list(a["tools"])
        kwargs["extra_body"] = {**body, **(a["extra"] or {})}
        return kwargs

    def retry_request(self, exc: openai.APIStatusError) -> dict[str, Any] | None:
        """A 400/422 to a request carrying ``stream_options``: the request without it."""
        if not (self.with_usage and exc.status_code in (400, 422)):
            return None
        self.with_usage = False
        return self.request()

    def accepted(self, response: Any) -> None:
        """The server answered; if only without ``stream_options``, remember that."""
        self.http_request = response.http_request
        if not self.with_usage:
            _NO_STREAM_OPTIONS.add(self.client)

    def line(self, line: str) -> Sequence[Event] | None:
        """The events one body line completes; ``None`` once ``[DONE]`` ends the stream.

        Raises :class:`MalformedStreamError` for data that is not a JSON object, and
        ``openai.APIError`` for an ``error`` event, as the SDK's own stream does.
        """
        try:
            data = self._sse.feed(line)
        except ValueError as exc:
            raise _malformed(str(exc)) from exc
        if data is None:
            return ()
        if data.startswith("[DONE]"):
            return None
        chunk = _json(data)
        if type(chunk) is not dict:
            raise _malformed(f"a chunk that is a JSON {type(chunk).__name__}, not an object")
        if chunk.get("error"):
            raise stream_error(chunk["error"], self.http_request)
        try:
            return self._feed(chunk)
        except (AttributeError, TypeError, ValueError) as exc:
            raise _malformed(f"a chunk of unexpected shape: {exc}") from exc

    def _feed(self, chunk: dict[str, Any]) -> list[Event]:
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = Usage(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                int(usage.get("total_tokens") or 0),
            )
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.reason = choice["finish_reason"]
            delta = choice.get("delta")
            if not delta:
                continue
            if delta.get("content"):
                events.append(TextDelta(delta["content"]))
            for position, fragment in enumerate(delta.get("tool_calls") or ()):
                self._fold(position, fragment)
        return events

    def _fold(self, position: int, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        call = self.calls.setdefault(position if index is None else int(index), _PendingCall())
        if fragment.get("id") and call.id is None:
            call.id = fragment["id"]
        function = fragment.get("function")
        if function:
            if function.get("name") and call.name is None:
                call.name = function["name"]  # first delta only (llama.cpp repeats it)
            if function.get("arguments"):
                call.arguments += function["arguments"]

    def finish(self) -> Iterator[Event]:
        for index in sorted(self.calls):
            call = self.calls[index]
            yield ToolCall(call.id or f"call_{index}", call.name or "", call.arguments)
        if self.usage is not None:
            yield self.usage
        yield Finish(self.reason)


@dataclass(slots=True)
class _PendingCall:
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def _malformed(detail: str) -> MalformedStreamError:
    return MalformedStreamError(
        f"The server sent a malformed stream ({detail}); "
        "check that base_url points at an OpenAI-compatible /v1 endpoint."
    )


def _json(data: str) -> Any:
    """``json.loads(data)`` (through orjson where it reads the same: :mod:`fastjson`)."""
    try:
        return fastjson.loads(data)
    except json.JSONDecodeError as exc:
        raise _malformed(f"a chunk that is not JSON: {exc.msg} at char {exc.pos}") from exc


def _arguments(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    temperature: float | None,
    max_tokens: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The keyword arguments of one call, as :class:`_Exchange` reads them (both twins)."""
    return {
        "model": model,
        "messages": messages,
        "tools": tools,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "extra": extra,
    }


def stream_chat(
    client: openai.OpenAI,
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Event]:
    """Stream one chat completion: ``TextDelta*``, then ``ToolCall*``, ``Usage?``, ``Finish``.

    Tool calls are emitted once complete, after the text. SDK errors propagate
    unchanged (pass them to :func:`describe_error`); a body that breaks mid-read
    raises the SDK's ``APIConnectionError``/``APITimeoutError``, an ``error``
    event its ``APIError``, and a chunk that is not JSON :class:`MalformedStreamError`.
    Closing the generator early closes the HTTP response.
    """
    exchange = _Exchange(client, _arguments(model, messages, tools, temperature, max_tokens, extra))
    create = client.chat.completions.with_streaming_response.create
    try:
        response = create(**exchange.request()).__enter__()
    except openai.APIStatusError as exc:
        if (retry := exchange.retry_request(exc)) is None:
            raise
        response = create(**retry).__enter__()
    exchange.accepted(response)
    try:
        for line in response.http_response.iter_lines():
            events = exchange.line(line)
            if events is None:
                break
            yield from events
    except transport_errors() as exc:
        raise broken_body(exc, exchange.http_request) from exc
    finally:
        response.close()
    yield from exchange.finish()


async def astream_chat(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AsyncIterator[Event]:
    """The async twin of :func:`stream_chat`: same events, same order, same errors."""
    exchange = _Exchange(client, _arguments(model, messages, tools, temperature, max_tokens, extra))
    create = client.chat.completions.with_streaming_response.create
    try:
        response = await create(**exchange.request()).__aenter__()
    except openai.APIStatusError as exc:
        if (retry := exchange.retry_request(exc)) is None:
            raise
        response = await create(**retry).__aenter__()
    exchange.accepted(response)
    lines = response.http_response.aiter_lines()
    try:
        async for line in lines:
            events = exchange.line(line)
            if events is None:
                await _drain(response, lines)
                break
            for event in events:
                yield event
    except transport_errors() as exc:
        raise broken_body(exc, exchange.http_request) from exc
    finally:
        await lines.aclose()
        await response.close()
    for event in exchange.finish():
        yield event


async def _drain(response: Any, lines: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` for at most 0.1 s, so HTTP/1.1 can reuse the connection.

    What the SDK's ``AsyncStream`` does too; the deadline keeps a server that holds
    the body open from stalling the answer, and anything read is discarded.
    """
    if response.http_version != "HTTP/1.1":
        return
    with anyio.move_on_after(_DRAIN_SECONDS):
        try:
            async for _ in lines:
                pass
        except transport_errors():
            pass  # the answer is complete; a broken tail is not an error
