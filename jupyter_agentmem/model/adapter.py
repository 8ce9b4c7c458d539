"""The provider adapter: openai SDK stream chunks in, our own small events out.

One small contract (as in simonw/llm): :func:`stream_chat` is a generator of
:data:`Event` values. Conversation, tools, rendering and memory are written once
against these events and never see an SDK type, so quirks of OpenAI-compatible
servers are absorbed here:

* tool calls arrive as fragments keyed by ``index``; llama.cpp repeats the
  function name in every fragment, so the name is taken from the first one;
* some servers reject ``stream_options`` with a 400; we retry once without it
  (and remember, per client, that this server does not take it);
* a consumer that stops early (``break``, ``KeyboardInterrupt``) closes the HTTP
  response, so the server stops generating and the socket is freed.

:func:`describe_error` (in ``failures``) turns any failure into one line that says what to do.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import openai

from .failures import NO_KEY_HINT, MalformedStreamError, describe_error

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

#: Sent when a non-OpenAI ``base_url`` (Ollama, vLLM, llama.cpp, the demo model) needs no key.
PLACEHOLDER_KEY = "sk-no-key-required"


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


# -- clients ------------------------------------------------------------------------------------


def _resolve_key(base_url: str | None, api_key: str | None) -> str | None:
    """The key to use: explicit, else ``OPENAI_API_KEY``, else a placeholder for non-OpenAI URLs.

    Local OpenAI-compatible servers ignore the key but the SDK insists on one, so a
    user pointing at Ollama should not have to invent a key; OpenAI itself keeps
    the SDK's clear "no key" error.
    """
    if api_key:
        return api_key
    if os.environ.get("OPENAI_API_KEY"):
        return None  # let the SDK read it
    if base_url and "api.openai.com" not in base_url:
        return PLACEHOLDER_KEY
    return None


def _client_options(
    base_url: str | None, api_key: str | None, timeout: float, max_retries: int
) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": _resolve_key(base_url, api_key),
        "timeout": timeout,
        "max_retries": max_retries,
    }


def make_client(
    base_url: str | None, api_key: str | None, timeout: float = 60.0, max_retries: int = 2
) -> openai.OpenAI:
    """A configured sync client; raises ``openai.OpenAIError`` when no key can be found."""
    return openai.OpenAI(**_client_options(base_url, api_key, timeout, max_retries))


def make_async_client(
    base_url: str | None, api_key: str | None, timeout: float = 60.0, max_retries: int = 2
) -> openai.AsyncOpenAI:
    """The async twin of :func:`make_client`."""
    return openai.AsyncOpenAI(**_client_options(base_url, api_key, timeout, max_retries))


# -- streaming ----------------------------------------------------------------------------------

# Clients whose server rejected ``stream_options`` once: do not send it again.
_NO_STREAM_OPTIONS: weakref.WeakSet[Any] = weakref.WeakSet()


class _Exchange:
    """One streamed completion, sans I/O: the request to send, whether a refusal is worth
    a retry without ``stream_options``, and SDK chunks folded into events.

    :func:`stream_chat` and :func:`astream_chat` are its two thin drivers, so they
    agree on events, order and errors by construction.
    """

    def __init__(self, client: Any, arguments: Mapping[str, Any]) -> None:
        self.client = client
        self.arguments = arguments
        self.with_usage = client not in _NO_STREAM_OPTIONS
        self.calls: dict[int, _PendingCall] = {}
        self.usage: Usage | None = None
        self.reason: str | None = None

    def request(self) -> dict[str, Any]:
        """Keyword arguments for ``chat.completions.create`` (``extra`` goes into the body)."""
        a = self.arguments
        kwargs: dict[str, Any] = {"model": a["model"], "messages": list(a["messages"])}
        kwargs["stream"] = True
        if self.with_usage:
            kwargs["stream_options"] = {"include_usage": True}
        if a["tools"]:
            kwargs["tools"] = list(a["tools"])
        if a["temperature"] is not None:
            kwargs["temperature"] = a["temperature"]
        if a["max_tokens"] is not None:
            kwargs["max_tokens"] = a["max_tokens"]
        if a["extra"]:
            kwargs["extra_body"] = dict(a["extra"])
        return kwargs

    def retry_request(self, exc: openai.APIStatusError) -> dict[str, Any] | None:
        """A 400/422 to a request carrying ``stream_options``: the request without it."""
        if not (self.with_usage and exc.status_code in (400, 422)):
            return None
        self.with_usage = False
        return self.request()

    def accepted(self) -> None:
        """The server answered; if only without ``stream_options``, remember that."""
        if not self.with_usage:
            _NO_STREAM_OPTIONS.add(self.client)

    def feed(self, chunk: Any) -> Iterator[Event]:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = Usage(
                int(usage.prompt_tokens or 0),
                int(usage.completion_tokens or 0),
                int(usage.total_tokens or 0),
            )
        for choice in chunk.choices or ():
            if choice.finish_reason:
                self.reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                yield TextDelta(delta.content)
            for position, fragment in enumerate(delta.tool_calls or ()):
                self._fold(position, fragment)

    def _fold(self, position: int, fragment: Any) -> None:
        index = fragment.index if fragment.index is not None else position
        call = self.calls.setdefault(index, _PendingCall())
        if fragment.id and call.id is None:
            call.id = fragment.id
        function = fragment.function
        if function is not None:
            if function.name and call.name is None:
                call.name = function.name  # first delta only (llama.cpp repeats it)
            if function.arguments:
                call.arguments += function.arguments

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


def _malformed(exc: json.JSONDecodeError) -> MalformedStreamError:
    return MalformedStreamError(
        "The server sent a malformed stream (a chunk that is not JSON: "
        f"{exc.msg} at char {exc.pos}); check that base_url points at an "
        "OpenAI-compatible /v1 endpoint."
    )


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
    unchanged (pass them to :func:`describe_error`), except a non-JSON chunk,
    which becomes :class:`MalformedStreamError`. Closing the generator early
    closes the HTTP response.
    """
    exchange = _Exchange(client, _arguments(model, messages, tools, temperature, max_tokens, extra))
    try:
        stream = client.chat.completions.create(**exchange.request())
    except openai.APIStatusError as exc:
        if (retry := exchange.retry_request(exc)) is None:
            raise
        stream = client.chat.completions.create(**retry)
    exchange.accepted()
    try:
        for chunk in cast(Iterator[Any], stream):
            yield from exchange.feed(chunk)
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from exc
    finally:
        stream.close()
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
    try:
        stream = await client.chat.completions.create(**exchange.request())
    except openai.APIStatusError as exc:
        if (retry := exchange.retry_request(exc)) is None:
            raise
        stream = await client.chat.completions.create(**retry)
    exchange.accepted()
    try:
        async for chunk in cast(AsyncIterator[Any], stream):
            for event in exchange.feed(chunk):
                yield event
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from exc
    finally:
        await stream.close()
    for event in exchange.finish():
        yield event
