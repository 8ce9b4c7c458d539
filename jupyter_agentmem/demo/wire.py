"""The OpenAI chat-completions wire format: reply values and the exact JSON they become.

``Payloads`` turns a :class:`Text` or :class:`ToolCalls` reply into the
``chat.completion(.chunk)`` JSON OpenAI sends, so the real SDK parses the demo
model's (and the test server's) answers as it would a real server's. Pure data,
no I/O: :mod:`.server` writes it to a socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .reply import estimate_tokens, prompt_chars

__all__ = ["CREATED", "Error", "Payloads", "Text", "ToolCalls", "error_body"]

CREATED = 1_700_000_000  # fixed "created" timestamp: responses are byte-for-byte repeatable


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
