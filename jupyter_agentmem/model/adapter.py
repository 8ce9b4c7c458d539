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

:func:`describe_error` turns any failure into one line that says what to do.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import openai

from jupyter_agentmem.errors import AgentMemError

__all__ = [
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

NO_KEY_HINT = (
    "No API key: set OPENAI_API_KEY, or `%agent_memory config base_url=... model=...` "
    "(or model=demo for the offline demo model)"
)

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


class MalformedStreamError(AgentMemError):
    """The server sent a streamed chunk that is not valid JSON."""


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


def _request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    temperature: float | None,
    max_tokens: int | None,
    extra: Mapping[str, Any] | None,
    with_usage: bool,
) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create`` (``extra`` goes into the JSON body)."""
    kwargs: dict[str, Any] = {"model": model, "messages": list(messages), "stream": True}
    if with_usage:
        kwargs["stream_options"] = {"include_usage": True}
    if tools:
        kwargs["tools"] = list(tools)
    if temperature is not None:
        kwargs["temperature"] = temperature
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if extra:
        kwargs["extra_body"] = dict(extra)
    return kwargs


def _rejects_stream_options(exc: openai.APIStatusError) -> bool:
    """A 400/422 to a request carrying ``stream_options``: worth one retry without it."""
    return exc.status_code in (400, 422)


@dataclass(slots=True)
class _PendingCall:
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class _Assembler:
    """Folds SDK chunks into events; shared by the sync and async adapters (so they agree)."""

    def __init__(self) -> None:
        self.calls: dict[int, _PendingCall] = {}
        self.usage: Usage | None = None
        self.reason: str | None = None

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


def _malformed(exc: json.JSONDecodeError) -> MalformedStreamError:
    return MalformedStreamError(
        "The server sent a malformed stream (a chunk that is not JSON: "
        f"{exc.msg} at char {exc.pos}); check that base_url points at an "
        "OpenAI-compatible /v1 endpoint."
    )


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
    with_usage = client not in _NO_STREAM_OPTIONS
    args = (model, messages, tools, temperature, max_tokens, extra)
    try:
        stream = client.chat.completions.create(**_request(*args, with_usage))
    except openai.APIStatusError as exc:
        if not (with_usage and _rejects_stream_options(exc)):
            raise
        stream = client.chat.completions.create(**_request(*args, False))
        _NO_STREAM_OPTIONS.add(client)
    assembler = _Assembler()
    try:
        for chunk in cast(Iterator[Any], stream):
            yield from assembler.feed(chunk)
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from exc
    finally:
        stream.close()
    yield from assembler.finish()


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
    with_usage = client not in _NO_STREAM_OPTIONS
    args = (model, messages, tools, temperature, max_tokens, extra)
    try:
        stream = await client.chat.completions.create(**_request(*args, with_usage))
    except openai.APIStatusError as exc:
        if not (with_usage and _rejects_stream_options(exc)):
            raise
        stream = await client.chat.completions.create(**_request(*args, False))
        _NO_STREAM_OPTIONS.add(client)
    assembler = _Assembler()
    try:
        async for chunk in cast(AsyncIterator[Any], stream):
            for event in assembler.feed(chunk):
                yield event
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from exc
    finally:
        await stream.close()
    for event in assembler.finish():
        yield event


# -- errors -------------------------------------------------------------------------------------

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)")


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEYLIKE.sub("***", text)


def _request_of(exc: BaseException) -> Any:
    try:
        return getattr(exc, "request", None)
    except RuntimeError:  # httpx raises when an error has no request attached
        return None


def _base_url_of(request: Any) -> str:
    """The base URL the failed request went to, without any ``user:password@`` part."""
    if request is None:
        return "the model server"
    url = re.sub(r"//[^/@]*@", "//", str(request.url))
    cut = url.find("/chat/completions")
    return url[:cut] if cut >= 0 else url


def _model_of(request: Any) -> str | None:
    try:
        model = json.loads(request.content).get("model")
    except Exception:  # streaming or unreadable body: the model is just not named
        return None
    return model if isinstance(model, str) else None


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else None
        if isinstance(message, str):
            return message
    return str(exc.message)


def _retries(exc: openai.APIStatusError) -> int:
    try:
        return int(exc.response.request.headers.get("x-stainless-retry-count", "0"))
    except (ValueError, RuntimeError):
        return 0


def _timeout_of(request: Any) -> str:
    timeout = getattr(request, "extensions", {}).get("timeout") if request is not None else None
    if isinstance(timeout, Mapping) and timeout.get("read") is not None:
        return f"{float(timeout['read']):g}s"
    return "the configured timeout"


def _describe_connection(exc: BaseException, request: Any, secrets: Sequence[str]) -> str:
    """Refused connection vs. a stream cut mid-answer, told apart by the transport error.

    Matched by class name so that httpx (openai 1.x/2.x) and httpx2 (3.x) both work.
    """
    cause = exc.__cause__ or exc.__context__
    where = _base_url_of(request)
    kind = type(cause).__name__ if cause is not None else ""
    detail = f" ({kind}: {_redact(str(cause), secrets)})" if cause is not None else ""
    if kind in {"ConnectError", "ConnectTimeout"}:
        return (
            f"Cannot reach {where}: is the server running? Check base_url "
            f"(`%agent_memory config base_url=...`){detail}."
        )
    text = str(cause)
    if "incomplete" in text or "peer closed" in text or kind == "ReadError":
        return (
            f"The connection to {where} dropped in the middle of the answer{detail}: "
            "the server stopped or crashed; try again."
        )
    return (
        f"The connection to {where} failed{detail}: is the server running and is "
        "base_url right (`%agent_memory config base_url=...`)?"
    )


def describe_error(exc: BaseException, *, api_key: str | None = None) -> str:
    """One line saying what went wrong and what to do next; never contains the API key.

    ``api_key`` (optional) is scrubbed from any server-provided text as well as
    anything that looks like a key (``sk-...``, ``Bearer ...``).
    """
    secrets = [api_key] if api_key else []
    if os.environ.get("OPENAI_API_KEY"):
        secrets.append(os.environ["OPENAI_API_KEY"])
    request = _request_of(exc)

    if isinstance(exc, MalformedStreamError | json.JSONDecodeError):
        return (
            "The server sent a malformed stream (a chunk that is not JSON): check that "
            "base_url points at an OpenAI-compatible /v1 endpoint, then try again."
        )
    if isinstance(exc, openai.APITimeoutError):
        return (
            f"The request to {_base_url_of(request)} timed out after {_timeout_of(request)}: "
            "the server is slow or stuck; try again, or raise the timeout."
        )
    if isinstance(exc, openai.APIConnectionError):
        return _describe_connection(exc, request, secrets)
    if isinstance(exc, openai.APIStatusError):
        said = _redact(_server_message(exc), secrets)[:300]
        model = _model_of(request)
        status = exc.status_code
        if exc.code == "cassette_miss":  # replay server: its message names request and file
            return f"Replay cassette has no answer ({status}): {said}"
        if status == 401:
            return (
                "The API key was rejected (401): check OPENAI_API_KEY (or the key you "
                f"configured) and that base_url is the provider it belongs to. Server said: {said}"
            )
        if status == 403:
            return f"Access denied (403) for this key or model: {said}"
        if status == 404:
            return (
                f"Not found (404): unknown model {model!r} or wrong base_url "
                f"({_base_url_of(request)}); check `%agent_memory config model=... "
                f"base_url=...`. Server said: {said}"
            )
        if status == 429:
            return (
                f"Rate limited (429) after {_retries(exc)} retries: wait a minute and try "
                f"again, or check your plan's rate limits. Server said: {said}"
            )
        if status >= 500:
            return (
                f"The model server failed ({status}) after {_retries(exc)} retries: try again "
                f"later. Server said: {said}"
            )
        return f"The model server refused the request ({status}): {said}"
    text = str(exc)
    if isinstance(exc, openai.OpenAIError) and ("api_key" in text.lower() or "credentials" in text):
        return NO_KEY_HINT
    return f"{type(exc).__name__}: {_redact(str(exc), secrets)}"
