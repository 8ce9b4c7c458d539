"""Scripted replies of the test model server (beyond the demo model's text and tool calls).

Each reply type is a small frozen value queued with ``FakeModelServer.enqueue_*``.
Text, tool calls and errors, and the OpenAI wire format they become, live with
the demo model in :mod:`jupyter_agentmem.demo.wire`; the failure modes only a
test wants (dropped connections, malformed chunks, hangs) live here.
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_agentmem.demo.wire import CREATED, Error, Payloads, Text, ToolCalls, error_body

__all__ = [
    "CREATED",
    "ERROR_KINDS",
    "Drop",
    "Error",
    "Hang",
    "Malformed",
    "Payloads",
    "RawSSE",
    "Reply",
    "StreamError",
    "Text",
    "ToolCalls",
    "error_body",
]

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


@dataclass(frozen=True, slots=True)
class StreamError:
    """Scripted reply: some content chunks, then an ``{"error": {...}}`` event (no ``[DONE]``)."""

    after_chunks: int
    text: str
    message: str
    type: str
    code: str | None


@dataclass(frozen=True, slots=True)
class RawSSE:
    """Scripted reply: a 200 event stream whose body is ``frames``, each sent verbatim as one
    HTTP chunk (comments, ``event:`` lines, multi-line data, any line endings),
    ``delay`` seconds apart."""

    frames: tuple[str, ...]
    delay: float = 0.0


Reply = Text | ToolCalls | Error | Drop | Malformed | Hang | StreamError | RawSSE
