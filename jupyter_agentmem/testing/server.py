"""A deterministic loopback OpenAI-compatible server for tests: scripted replies, cassettes.

Why not mock the SDK: the openai SDK 3.x talks through httpx2, which respx-style
mocks do not intercept, and a mock would skip exactly the code that breaks in
practice (SSE parsing, retries, timeouts, dropped connections). The HTTP/SSE
core is the demo model's server (:mod:`jupyter_agentmem.demo.server`); this
module adds a queue of scripted replies (including failures), replay from a
cassette and a recording proxy to a real upstream.
"""

from __future__ import annotations

import http.client
import json
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from jupyter_agentmem.demo.reply import demo_reply
from jupyter_agentmem.demo.server import DemoServer, LoopbackHTTPServer, ModelHandler, Responder

from .cassette import Cassette, Interaction, iter_lines, iter_sse_data, open_upstream
from .replies import (
    ERROR_KINDS,
    Drop,
    Error,
    Hang,
    Malformed,
    Payloads,
    RawSSE,
    Reply,
    StreamError,
    Text,
    ToolCalls,
    error_body,
)

__all__ = ["DefaultResponder", "FakeModelServer", "Reply"]

#: ``"demo"`` (the built-in demo model), ``None`` (an empty queue is a 500), or
#: a function mapping the request body to a :class:`~jupyter_agentmem.demo.DemoReply`.
DefaultResponder = Literal["demo"] | None | Responder


class FakeModelServer(DemoServer):
    """An OpenAI-compatible chat-completions server with a queue of scripted replies.

    Each ``POST /v1/chat/completions`` takes the next scripted reply. When the queue
    is empty, what answers depends on the mode:

    * ``replay="c.json"``: the recorded interaction matching the request (404 on a miss);
    * ``record_to="c.json", upstream="https://api.openai.com/v1"``: the request is
      forwarded (with the client's Authorization header, which is never written),
      streamed back as it arrives and appended to the cassette;
    * otherwise ``default``: the demo model (``"demo"``), a function of the request
      body returning a :class:`~jupyter_agentmem.demo.DemoReply`, or ``None`` for a
      500 "no scripted reply queued" (what tests want: nothing passes by accident).

    ``demo_delay`` / ``demo_chunk_size`` pace default answers (realistic by default;
    use ``demo_delay=0`` in tests). Scripted replies carry their own pacing.

    >>> with FakeModelServer(default=None) as srv:  # doctest: +SKIP
    ...     srv.enqueue_text("Hello world")
    ...     client = openai.OpenAI(base_url=srv.base_url, api_key="x")
    """

    THREAD_PREFIX = "FakeModelServer"

    def __init__(
        self,
        port: int = 0,
        *,
        default: DefaultResponder = "demo",
        demo_delay: float = 0.015,
        demo_chunk_size: int = 5,
        record_to: str | os.PathLike[str] | None = None,
        upstream: str | None = None,
        replay: str | os.PathLike[str] | None = None,
        upstream_timeout: float = 120.0,
        max_requests_kept: int = 1000,
    ) -> None:
        if (record_to is None) != (upstream is None):
            raise ValueError("record_to and upstream go together (proxy-and-record mode)")
        if replay is not None and record_to is not None:
            raise ValueError("choose replay=... or record_to=..., not both")
        super().__init__(
            port,
            responder=None if default is None else _demo_or(default),
            delay=demo_delay,
            chunk_size=demo_chunk_size,
            max_requests_kept=max_requests_kept,
        )
        self._record_to = record_to
        self._upstream = upstream
        self._replay = replay
        self.upstream_timeout = upstream_timeout
        self._queue: deque[Reply] = deque()
        self.cassette: Cassette | None = None

    def _prepare(self) -> None:
        """Open the cassette; raises :class:`~.cassette.CassetteError` when missing or corrupt."""
        if self._replay is not None:
            self.cassette = Cassette.load(self._replay)
        elif self._record_to is not None:
            # A recording starts a fresh cassette; the old file is replaced only when the
            # first interaction is written (atomically), never merely by starting.
            self.cassette = Cassette(self._record_to)

    def start(self) -> FakeModelServer:
        """Bind and serve on a daemon thread; idempotent. Returns ``self`` for chaining.

        Raises :class:`~.cassette.CassetteError` when the replay cassette is missing or corrupt.
        """
        super().start()
        return self

    def __enter__(self) -> FakeModelServer:
        return self.start()

    # -- scripting ----------------------------------------------------------------------------

    def enqueue(self, reply: Reply) -> None:
        """Queue any reply object from :mod:`.replies` (the ``enqueue_*`` helpers build them)."""
        with self._lock:
            self._queue.append(reply)

    def enqueue_text(
        self,
        text: str,
        *,
        chunk_size: int = 4,
        delay: float = 0.0,
        usage: bool = True,
        finish_reason: str = "stop",
    ) -> None:
        """Stream ``text`` in pieces of ``chunk_size`` chars, ``delay`` seconds apart."""
        self.enqueue(Text(text, max(1, chunk_size), delay, usage, finish_reason))

    def enqueue_tool_calls(
        self,
        calls: Sequence[Mapping[str, Any]],
        *,
        text: str | None = None,
        delay: float = 0.0,
        chunk_size: int = 5,
        usage: bool = True,
        repeat_name: bool = False,
    ) -> None:
        """Answer with parallel tool calls (ids ``call_1``, ``call_2``... unless given).

        Each call is ``{"name": ..., "arguments": dict | str, "id": optional}``; the
        arguments JSON is split across chunks of ``chunk_size`` characters.
        ``repeat_name=True`` repeats the name in every delta, as llama.cpp does.
        """
        built = []
        for call in calls:
            args = call.get("arguments", {})
            args_text = args if isinstance(args, str) else json.dumps(args)
            built.append((call.get("id"), str(call["name"]), args_text))
        self.enqueue(ToolCalls(tuple(built), text, delay, max(1, chunk_size), usage, repeat_name))

    def enqueue_error(
        self,
        status: int = 500,
        message: str = "server error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer with an HTTP error and an OpenAI-style ``{"error": {...}}`` body."""
        kind, code = ERROR_KINDS.get(status, ("api_error", None))
        self.enqueue(Error(status, message, tuple((headers or {}).items()), kind, code))

    def enqueue_drop(self, after_chunks: int = 3, text: str = "partial answer ...") -> None:
        """Send ``after_chunks`` content chunks of ``text``, then close the socket (no [DONE])."""
        self.enqueue(Drop(max(0, after_chunks), text))

    def enqueue_malformed(self) -> None:
        """Send a ``data:`` line that is not JSON (after a valid first chunk)."""
        self.enqueue(Malformed())

    def enqueue_stream_error(
        self,
        message: str = "The server had an error while processing your request.",
        *,
        after_chunks: int = 2,
        text: str = "partial answer ...",
        kind: str = "server_error",
        code: str | None = None,
    ) -> None:
        """Send ``after_chunks`` content chunks of ``text``, then an SSE event carrying
        ``{"error": {"message": ..., "type": kind, "code": code}}`` and end the body,
        as OpenAI does when generation fails after the 200 was sent."""
        self.enqueue(StreamError(max(0, after_chunks), text, message, kind, code))

    def enqueue_sse(self, *frames: str, delay: float = 0.0) -> None:
        """Answer 200 with an event stream whose body is ``frames``, verbatim, one HTTP
        chunk each, ``delay`` seconds apart: for the corners of the SSE format (comments,
        ``event:`` lines, multi-line ``data``, CRLF), which the other replies never produce."""
        self.enqueue(RawSSE(tuple(frames), delay))

    def enqueue_hang(self, seconds: float) -> None:
        """Read the request, then send nothing for ``seconds`` (cut short by :meth:`stop`)."""
        self.enqueue(Hang(seconds))

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        with self._lock:
            return len(self._queue)

    # -- choosing the reply ------------------------------------------------------------------

    def next_reply(self, body: Mapping[str, Any]) -> Reply | Interaction | Literal["proxy"]:
        """Pick what answers this request: queue, cassette, upstream or default responder."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self._replay is not None and self.cassette is not None:
            found = self.cassette.match(body)
            if found is not None:
                return found
            return Error(
                404, self.cassette.miss_message(body), (), "invalid_request_error", "cassette_miss"
            )
        if self._upstream is not None:
            return "proxy"
        if self._responder is None:
            return Error(
                500,
                "no scripted reply queued: call enqueue_text()/enqueue_tool_calls() first, "
                "or use FakeModelServer(default='demo')",
                (),
                "server_error",
                "no_reply_queued",
            )
        return self.respond(body)

    @property
    def upstream(self) -> str | None:
        return self._upstream


def _demo_or(default: Literal["demo"] | Responder) -> Responder:
    return demo_reply if default == "demo" else default


class _Handler(ModelHandler):
    """Adds the test-only replies (drops, malformed chunks, hangs), replay and the proxy."""

    @property
    def owner(self) -> FakeModelServer:
        return cast(FakeModelServer, cast(LoopbackHTTPServer, self.server).owner)

    def answer(self, reply: Any, raw: bytes, body: Mapping[str, Any], seq: int) -> None:
        if reply == "proxy":
            self._proxy(raw, body)
        elif isinstance(reply, Interaction):
            self._replay(reply)
        elif isinstance(reply, Hang):
            self.owner.stopping.wait(reply.seconds)
            self.abort()
        elif isinstance(reply, Drop):
            self._drop(reply, Payloads(body, seq), bool(body.get("stream")))
        elif isinstance(reply, StreamError):
            events = Payloads(body, seq).text_events(Text(reply.text))[: 1 + reply.after_chunks]
            error = {"message": reply.message, "type": reply.type, "code": reply.code}
            self.stream([*events, json.dumps({"error": error})])
        elif isinstance(reply, RawSSE):
            self.start_stream()
            for n, frame in enumerate(reply.frames):
                if n and reply.delay > 0 and self.owner.stopping.wait(reply.delay):
                    return
                data = frame.encode()
                if data and not self.write(b"%X\r\n%s\r\n" % (len(data), data)):
                    return
            self.end_stream()
        elif isinstance(reply, Malformed):
            if body.get("stream"):
                first = Payloads(body, seq).text_events(Text(""))[0]
                self.stream([first, '{"id": "chatcmpl-broken", "choices": [ not json', "[DONE]"])
            else:
                self.send_json(200, b'{"id": "chatcmpl-broken", not json')
        else:
            super().answer(reply, raw, body, seq)

    def _drop(self, reply: Drop, out: Payloads, stream: bool) -> None:
        events = out.text_events(Text(reply.text))[: 1 + reply.after_chunks]
        if stream:
            self.start_stream()
            for payload in events:
                self.event(payload)
        else:
            data = json.dumps(out.text_completion(Text(reply.text))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.write(data[: len(data) // 2])
        self.abort()

    def _replay(self, found: Interaction) -> None:
        if found.chunks is not None:
            self.stream(found.chunks)
            return
        data = found.body if isinstance(found.body, str) else json.dumps(found.body)
        self.send_json(found.status, data.encode(), (), found.content_type)

    def _proxy(self, raw: bytes, body: Mapping[str, Any]) -> None:
        """Forward to the upstream, stream the answer back as it arrives, record it."""
        owner, httpd = self.owner, cast(LoopbackHTTPServer, self.server)
        assert owner.upstream is not None and owner.cassette is not None
        headers = dict(self.headers.items())
        try:
            conn = open_upstream(
                owner.upstream, "/chat/completions", raw, headers, owner.upstream_timeout
            )
        except (OSError, ValueError) as exc:
            self._upstream_failed(exc)
            return
        upstream_sock = conn.sock
        httpd.track_socket(upstream_sock, add=True)  # before blocking: stop() can cut it
        try:
            if owner.stopping.is_set():
                return
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._upstream_failed(exc)
                return
            interaction = self._relay(resp, body)
            if interaction is not None:
                secrets = [
                    v.split()[-1]
                    for k, v in headers.items()
                    if k.lower() in {"authorization", "api-key"} and v.split()
                ]
                owner.cassette.append(interaction.redacted(secrets))
        finally:
            httpd.track_socket(upstream_sock, add=False)
            conn.close()

    def _upstream_failed(self, exc: BaseException) -> None:
        message = f"Cannot reach upstream {self.owner.upstream}: {type(exc).__name__}"
        self.send_json(502, error_body(message, "server_error", "upstream_unreachable"))

    def _relay(self, resp: http.client.HTTPResponse, body: Mapping[str, Any]) -> Interaction | None:
        """Pass the upstream response on; the interaction to record, or ``None`` if cut short."""
        content_type = resp.getheader("Content-Type") or "application/json"
        if resp.status == 200 and content_type.startswith("text/event-stream"):
            self.start_stream()
            chunks: list[str] = []
            try:
                for payload in iter_sse_data(iter_lines(resp)):
                    chunks.append(payload)
                    if not self.event(payload):
                        return None  # client gone: an incomplete exchange is not recorded
            except (OSError, http.client.HTTPException):
                self.abort()  # upstream dropped: drop the client too, record nothing
                return None
            self.end_stream()
            return Interaction(dict(body), 200, chunks=tuple(chunks))
        data = resp.read()
        passed = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() in {"retry-after", "retry-after-ms", "x-request-id"}
        ]
        self.send_json(resp.status, data, passed, content_type)
        try:
            stored: Any = json.loads(data)
        except ValueError:
            stored = data.decode("utf-8", "replace")
        return Interaction(dict(body), resp.status, body=stored, content_type=content_type)


FakeModelServer.handler_class = _Handler
