"""Scripted replies of the loopback model server, and the OpenAI wire format they become.

Each reply type is a small frozen value queued with ``FakeModelServer.enqueue_*``;
``Payloads`` turns one into the exact ``chat.completion(.chunk)`` JSON that
OpenAI sends, so the real SDK parses it as it would a real server's answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .demo import estimate_tokens, prompt_chars

CREATED = 1_700_000_000  # fixed "created" timestamp: responses are byte-for-byte repeatable

#: status -> (OpenAI error "type", "code"), so scripted errors look like the real thing.
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
}


@dataclass(frozen=True, slots=True)
class Text:
    """Scripted reply: stream ``text`` in pieces of ``chunk_size`` chars."""

    text: str
    chunk_size: int = 4
    delay: float = 0.0
    usage: bool = True
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Scripted reply: parallel tool calls ``(id or None, name, arguments JSON text)``."""

    calls: tuple[tuple[str | None, str, str], ...]
    text: str | None = None
    delay: float = 0.0
    chunk_size: int = 5
    usage: bool = True
    repeat_name: bool = False


@dataclass(frozen=True, slots=True)
class Error:
    """Scripted reply: an HTTP error with an OpenAI-style JSON body."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    type: str = "server_error"
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """Scripted reply: some content chunks, then the socket is closed (no ``[DONE]``)."""

    after_chunks: int
    text: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """Scripted reply: a ``data:`` line that is not JSON."""


@dataclass(frozen=True, slots=True)
class Hang:
    """Scripted reply: read the request, then send nothing for ``seconds``."""

    seconds: float


Reply = Text | ToolCalls | Error | Drop | Malformed | Hang


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class Payloads:
    """Builds OpenAI-shaped ``chat.completion.chunk`` / ``chat.completion`` JSON for one request."""

    def __init__(self, body: Mapping[str, Any], seq: int) -> None:
        self.model = str(body.get("model") or "demo")
        self.id = f"chatcmpl-fake-{seq}"
        self.prompt_tokens = estimate_tokens(prompt_chars(body))
        options = body.get("stream_options")
        self.include_usage = isinstance(options, Mapping) and bool(options.get("include_usage"))

    def usage(self, completion_chars: int) -> dict[str, int]:
        completion = estimate_tokens(completion_chars)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            obj["usage"] = None  # as OpenAI does on every chunk but the last
        return json.dumps(obj)

    def usage_chunk(self, completion_chars: int) -> str:
        obj = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "choices": [],
            "usage": self.usage(completion_chars),
        }
        return json.dumps(obj)

    def text_events(self, reply: Text) -> list[str]:
        events = [self.chunk({"role": "assistant", "content": ""})]
        events += [self.chunk({"content": p}) for p in _split(reply.text, reply.chunk_size)]
        events.append(self.chunk({}, reply.finish_reason))
        if reply.usage and self.include_usage:
            events.append(self.usage_chunk(len(reply.text)))
        return [*events, "[DONE]"]

    def tool_events(self, reply: ToolCalls, ids: Sequence[str]) -> list[str]:
        events = [self.chunk({"role": "assistant", "content": None})]
        events += [self.chunk({"content": p}) for p in _split(reply.text or "", reply.chunk_size)]
        for index, ((_, name, args), call_id) in enumerate(zip(reply.calls, ids, strict=True)):
            head = {"name": name, "arguments": ""}
            events.append(
                self.chunk(
                    {
                        "tool_calls": [
                            {"index": index, "id": call_id, "type": "function", "function": head}
                        ]
                    }
                )
            )
            for piece in _split(args, reply.chunk_size):
                fn = {"arguments": piece}
                if reply.repeat_name:
                    fn["name"] = name
                events.append(self.chunk({"tool_calls": [{"index": index, "function": fn}]}))
        events.append(self.chunk({}, "tool_calls"))
        if reply.usage and self.include_usage:
            chars = len(reply.text or "") + sum(len(n) + len(a) for _, n, a in reply.calls)
            events.append(self.usage_chunk(chars))
        return [*events, "[DONE]"]

    def completion(self, message: dict[str, Any], finish: str, chars: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": self.usage(chars),
        }

    def text_completion(self, reply: Text) -> dict[str, Any]:
        message = {"role": "assistant", "content": reply.text}
        return self.completion(message, reply.finish_reason, len(reply.text))

    def tool_completion(self, reply: ToolCalls, ids: Sequence[str]) -> dict[str, Any]:
        calls = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for (_, n, a), i in zip(reply.calls, ids, strict=True)
        ]
        chars = len(reply.text or "") + sum(len(n) + len(a) for _, n, a in reply.calls)
        message = {"role": "assistant", "content": reply.text, "tool_calls": calls}
        return self.completion(message, "tool_calls", chars)


def error_body(message: str, kind: str = "server_error", code: str | None = None) -> bytes:
    """An OpenAI-style error document."""
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()
