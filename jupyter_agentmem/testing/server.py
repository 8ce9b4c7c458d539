"""A deterministic loopback OpenAI-compatible server: real HTTP, real SSE.

Why not mock the SDK: the openai SDK 3.x talks through httpx2, which respx-style
mocks do not intercept, and a mock would skip exactly the code that breaks in
practice (SSE parsing, retries, timeouts, dropped connections). This server
speaks the wire protocol, so the real SDK path runs in tests, in notebooks and
behind the built-in demo model.

Stdlib only. It binds 127.0.0.1 (port 0 = a free port), serves each connection
on a daemon thread, never prints (a print from a thread lands in whichever
notebook cell is running), never stores request headers, and :meth:`stop`
leaves no thread behind.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast

from .cassette import Cassette, Interaction, iter_lines, iter_sse_data, open_upstream
from .demo import DemoReply, demo_reply
from .replies import (
    CREATED,
    ERROR_KINDS,
    Drop,
    Error,
    Hang,
    Malformed,
    Payloads,
    Reply,
    Text,
    ToolCalls,
    error_body,
)

__all__ = ["DefaultResponder", "FakeModelServer", "Reply"]

#: ``"demo"`` (the built-in demo model), ``None`` (an empty queue is a 500), or
#: a function mapping the request body to a :class:`~.demo.DemoReply`.
DefaultResponder = Literal["demo"] | None | Callable[[Mapping[str, Any]], DemoReply]

_JOIN_TIMEOUT = 5.0


class FakeModelServer:
    """An OpenAI-compatible chat-completions server with a queue of scripted replies.

    Each ``POST /v1/chat/completions`` takes the next scripted reply. When the queue
    is empty, what answers depends on the mode:

    * ``replay="c.json"``: the recorded interaction matching the request (404 on a miss);
    * ``record_to="c.json", upstream="https://api.openai.com/v1"``: the request is
      forwarded (with the client's Authorization header, which is never written),
      streamed back as it arrives and appended to the cassette;
    * otherwise ``default``: the demo model (``"demo"``), a function of the request
      body returning a :class:`~.demo.DemoReply`, or ``None`` for a 500
      "no scripted reply queued" (what tests want: nothing passes by accident).

    ``demo_delay`` / ``demo_chunk_size`` pace default answers (realistic by default;
    use ``demo_delay=0`` in tests). Scripted replies carry their own pacing.

    >>> with FakeModelServer(default=None) as srv:  # doctest: +SKIP
    ...     srv.enqueue_text("Hello world")
    ...     client = openai.OpenAI(base_url=srv.base_url, api_key="x")
    """

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
        self._port = port
        self._default = default
        self._demo_delay = demo_delay
        self._demo_chunk_size = demo_chunk_size
        self._record_to = record_to
        self._upstream = upstream
        self._replay = replay
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: deque[dict[str, Any]] = deque(maxlen=max_requests_kept)
        self._request_count = 0
        self._disconnects = 0
        self._models_seen: dict[str, None] = {"demo": None}
        self._call_ids = itertools.count(1)
        self._errors: deque[str] = deque(maxlen=50)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.cassette: Cassette | None = None

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        """Bind and serve on a daemon thread; idempotent. Returns ``self`` for chaining.

        Raises :class:`~.cassette.CassetteError` when the replay cassette is missing or corrupt.
        """
        with self._lock:
            if self._httpd is not None:
                return self
            if self._replay is not None:
                self.cassette = Cassette.load(self._replay)
            elif self._record_to is not None:
                # A recording starts a fresh cassette; the old file is replaced only when the
                # first interaction is written (atomically), never merely by starting.
                self.cassette = Cassette(self._record_to)
            self.stopping = threading.Event()
            httpd = _HTTPServer(("127.0.0.1", self._port), self)
            port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FakeModelServer:{port}",
                daemon=True,
            )
            thread.start()
            self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, join every thread and free the port. Idempotent."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        self.stopping.set()  # wakes hangs and paced streams
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if thread is not None:
            thread.join(_JOIN_TIMEOUT)

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeModelServer is not started: call start() or use `with`")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, ready for ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

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

    def enqueue_hang(self, seconds: float) -> None:
        """Read the request, then send nothing for ``seconds`` (cut short by :meth:`stop`)."""
        self.enqueue(Hang(seconds))

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        with self._lock:
            return len(self._queue)

    # -- observation --------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Parsed JSON bodies received (the most recent ``max_requests_kept``), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Chat-completion requests received since construction (not bounded)."""
        with self._lock:
            return self._request_count

    @property
    def client_disconnects(self) -> int:
        """Responses cut short because the client closed the connection."""
        with self._lock:
            return self._disconnects

    @property
    def errors(self) -> list[str]:
        """Tracebacks of unexpected handler errors (kept, never printed)."""
        with self._lock:
            return list(self._errors)

    # -- used by the handler threads ----------------------------------------------------------

    def receive(self, body: dict[str, Any]) -> int:
        """Record a request body; returns its 1-based sequence number."""
        with self._lock:
            self._requests.append(body)
            self._request_count += 1
            model = body.get("model")
            if isinstance(model, str) and model:
                self._models_seen[model] = None
            return self._request_count

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
        if self._default is None:
            return Error(
                500,
                "no scripted reply queued: call enqueue_text()/enqueue_tool_calls() first, "
                "or use FakeModelServer(default='demo')",
                (),
                "server_error",
                "no_reply_queued",
            )
        responder = demo_reply if self._default == "demo" else self._default
        try:
            answer = responder(body)
        except Exception as exc:  # a user's responder failed: say so instead of hanging up
            self.note_error()
            message = f"default responder raised {type(exc).__name__}: {exc}"
            return Error(500, message, (), "server_error", "responder_error")
        if answer.tool_calls:
            calls = tuple(
                (None, call.name, json.dumps(call.arguments)) for call in answer.tool_calls
            )
            return ToolCalls(
                calls, answer.text, self._demo_delay, self._demo_chunk_size, True, False
            )
        return Text(answer.text or "", self._demo_chunk_size, self._demo_delay, True, "stop")

    def next_call_id(self) -> str:
        with self._lock:
            return f"call_{next(self._call_ids)}"

    def note_disconnect(self) -> None:
        with self._lock:
            self._disconnects += 1

    def note_error(self) -> None:
        with self._lock:
            self._errors.append(traceback.format_exc())

    def models(self) -> list[str]:
        with self._lock:
            return list(self._models_seen)

    @property
    def upstream(self) -> str | None:
        return self._upstream


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its live connections, so ``stop()`` can end them all."""

    daemon_threads = True
    request_queue_size = 128  # asyncio.gather of many sessions connects all at once

    def __init__(self, address: tuple[str, int], owner: FakeModelServer) -> None:
        self.owner = owner
        self._live_lock = threading.Lock()
        self._live: dict[threading.Thread, socket.socket] = {}
        self._upstream_socks: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def track_upstream(self, sock: socket.socket | None, add: bool) -> None:
        """Remember (or forget) a proxy's upstream socket, so ``stop()`` can cut it too."""
        if sock is None:
            return
        with self._live_lock:
            if add:
                self._upstream_socks.add(sock)
            else:
                self._upstream_socks.discard(sock)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name=f"FakeModelServer:{self.server_address[1]}-conn",
            daemon=True,
        )
        with self._live_lock:
            self._live[thread] = request
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._live_lock:
                self._live.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.owner.note_error()  # never print: stderr of a kernel thread lands in a random cell

    def close_connections(self) -> None:
        """Cut every open client and upstream socket, then join the connection threads."""
        with self._live_lock:
            live = dict(self._live)
            socks = [*live.values(), *self._upstream_socks]
        for sock in socks:
            shutdown_socket(sock)
        deadline = time.monotonic() + _JOIN_TIMEOUT  # one bound for all, not one per thread
        for thread in live:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Serves one request per connection (``Connection: close``), streaming in HTTP chunks.

    Chunked transfer encoding is what lets the client tell a finished stream from
    a dropped one: a socket closed before the final zero-length chunk is an error.
    """

    protocol_version = "HTTP/1.1"
    server_version = "jupyter-agentmem-fake/1"

    @property
    def owner(self) -> FakeModelServer:
        return cast(_HTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the server must never print."""

    # -- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self.close_connection = True
        if self.path.split("?")[0].rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": CREATED, "owned_by": "jupyter-agentmem"}
                for m in self.owner.models()
            ]
            self._send_json(200, json.dumps({"object": "list", "data": data}).encode())
        else:
            self._not_found()

    def do_POST(self) -> None:
        self.close_connection = True
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0].rstrip("/") != "/v1/chat/completions":
            self._not_found()
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            self._send_json(
                400, error_body("request body is not a JSON object", "invalid_request_error")
            )
            return
        seq = self.owner.receive(body)
        reply = self.owner.next_reply(body)
        if reply == "proxy":
            self._proxy(raw, body)
        elif isinstance(reply, Interaction):
            self._replay(reply)
        else:
            self._serve(reply, body, seq)

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _not_found(self) -> None:
        message = f"Unknown endpoint {self.command} {self.path.split('?')[0]}"
        self._send_json(404, error_body(message, "invalid_request_error", "unknown_url"))

    # -- low-level writing --------------------------------------------------------------------

    def _send_json(
        self,
        status: int,
        data: bytes,
        headers: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, data: bytes) -> bool:
        """Write and flush; ``False`` (and counted) when the client has gone away."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            self.owner.note_disconnect()
            self.close_connection = True
            return False

    def _event(self, payload: str) -> bool:
        data = f"data: {payload}\n\n".encode()
        return self._write(b"%X\r\n%s\r\n" % (len(data), data))

    def _stream(self, events: Sequence[str], delay: float = 0.0) -> None:
        """Send SSE events ``delay`` seconds apart, flushing each; end the chunked body."""
        self._start_stream()
        for n, payload in enumerate(events):
            if n and delay > 0 and self.owner.stopping.wait(delay):
                return
            if not self._event(payload):
                return
        self._write(b"0\r\n\r\n")

    def _abort(self) -> None:
        """Close the connection abruptly (no final chunk): the client sees a broken body."""
        shutdown_socket(self.connection)

    # -- replies ------------------------------------------------------------------------------

    def _serve(self, reply: Reply, body: Mapping[str, Any], seq: int) -> None:
        out = Payloads(body, seq)
        stream = bool(body.get("stream"))
        if isinstance(reply, Error):
            data = error_body(reply.message, reply.type, reply.code)
            self._send_json(reply.status, data, reply.headers)
        elif isinstance(reply, Hang):
            self.owner.stopping.wait(reply.seconds)
            self._abort()
        elif isinstance(reply, Text):
            if stream:
                self._stream(out.text_events(reply), reply.delay)
            else:
                self._send_json(200, json.dumps(out.text_completion(reply)).encode())
        elif isinstance(reply, ToolCalls):
            ids = [cid or self.owner.next_call_id() for cid, _, _ in reply.calls]
            if stream:
                self._stream(out.tool_events(reply, ids), reply.delay)
            else:
                self._send_json(200, json.dumps(out.tool_completion(reply, ids)).encode())
        elif isinstance(reply, Drop):
            events = out.text_events(Text(reply.text))[: 1 + reply.after_chunks]
            if stream:
                self._start_stream()
                for payload in events:
                    self._event(payload)
            else:
                data = json.dumps(out.text_completion(Text(reply.text))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self._write(data[: len(data) // 2])
            self._abort()
        elif isinstance(reply, Malformed):
            if stream:
                first = out.text_events(Text(""))[0]
                self._stream([first, '{"id": "chatcmpl-broken", "choices": [ not json', "[DONE]"])
            else:
                self._send_json(200, b'{"id": "chatcmpl-broken", not json')

    def _replay(self, found: Interaction) -> None:
        if found.chunks is not None:
            self._stream(found.chunks)
            return
        data = found.body if isinstance(found.body, str) else json.dumps(found.body)
        self._send_json(found.status, data.encode(), (), found.content_type)

    def _proxy(self, raw: bytes, body: Mapping[str, Any]) -> None:
        """Forward to the upstream, stream the answer back as it arrives, record it."""
        owner, httpd = self.owner, cast(_HTTPServer, self.server)
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
        httpd.track_upstream(upstream_sock, add=True)  # before blocking: stop() can cut it
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
            httpd.track_upstream(upstream_sock, add=False)
            conn.close()

    def _upstream_failed(self, exc: BaseException) -> None:
        message = f"Cannot reach upstream {self.owner.upstream}: {type(exc).__name__}"
        self._send_json(502, error_body(message, "server_error", "upstream_unreachable"))

    def _relay(self, resp: http.client.HTTPResponse, body: Mapping[str, Any]) -> Interaction | None:
        """Pass the upstream response on; the interaction to record, or ``None`` if cut short."""
        content_type = resp.getheader("Content-Type") or "application/json"
        if resp.status == 200 and content_type.startswith("text/event-stream"):
            self._start_stream()
            chunks: list[str] = []
            try:
                for payload in iter_sse_data(iter_lines(resp)):
                    chunks.append(payload)
                    if not self._event(payload):
                        return None  # client gone: an incomplete exchange is not recorded
            except (OSError, http.client.HTTPException):
                self._abort()  # upstream dropped: drop the client too, record nothing
                return None
            self._write(b"0\r\n\r\n")
            return Interaction(dict(body), 200, chunks=tuple(chunks))
        data = resp.read()
        passed = [
            (k, v)
            for k, v in resp.getheaders()
            if k.lower() in {"retry-after", "retry-after-ms", "x-request-id"}
        ]
        self._send_json(resp.status, data, passed, content_type)
        try:
            stored: Any = json.loads(data)
        except ValueError:
            stored = data.decode("utf-8", "replace")
        return Interaction(dict(body), resp.status, body=stored, content_type=content_type)


def shutdown_socket(sock: socket.socket) -> None:
    """Shut a socket down both ways, ignoring an already-closed one (unblocks its reader)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
