"""Failures of a model request, told in one line that says what to do next.

Never contains the API key: it is scrubbed from server text, as is anything that
looks like a key.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import openai

from jupyter_agentmem.errors import AgentMemError

NO_KEY_HINT = (
    "No API key: set OPENAI_API_KEY, or `%agent_memory config base_url=... model=...` "
    "(or model=demo for the offline demo model)"
)


class MalformedStreamError(AgentMemError):
    """The server sent a streamed chunk that is not valid JSON."""


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


def _describe_status(exc: openai.APIStatusError, request: Any, secrets: Sequence[str]) -> str:
    """An HTTP error status from the server, with what to do about it."""
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


def stream_error(error: Any, request: Any) -> openai.APIError:
    """An ``error`` event in the middle of a stream, raised as the SDK's ``Stream`` does."""
    message = error.get("message") if isinstance(error, Mapping) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, request, body=error)


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a broken body raises while read: httpx2 (openai 3.x) or httpx errors, TLS, EOF.

    Evaluated only when an exception reaches the ``except`` (so per failure, not
    per line), from the modules already loaded: one not loaded cannot have raised.
    """
    errors: list[type[BaseException]] = [ssl.SSLError]
    for name in ("httpx2", "httpx"):
        if (module := sys.modules.get(name)) is not None:
            errors.append(module.RequestError)
    if (anyio := sys.modules.get("anyio")) is not None:
        errors.append(anyio.EndOfStream)
    return tuple(errors)


def broken_body(exc: BaseException, request: Any) -> openai.APIConnectionError:
    """The SDK's error for a body that broke mid-read (what ``describe_error`` explains)."""
    if any(cls.__name__ == "TimeoutException" for cls in type(exc).__mro__):
        return openai.APITimeoutError(request=request)
    return openai.APIConnectionError(request=request)


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
        return _describe_status(exc, request, secrets)
    text = str(exc)
    if isinstance(exc, openai.OpenAIError) and ("api_key" in text.lower() or "credentials" in text):
        return NO_KEY_HINT
    return f"{type(exc).__name__}: {_redact(str(exc), secrets)}"
