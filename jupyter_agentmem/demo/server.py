"""The demo model over real HTTP: a loopback OpenAI-compatible server with SSE streaming.

Why a server and not an in-process fake: the agent talks to every model through
the real ``openai`` SDK, so the demo model speaks the wire protocol and the same
code path (SSE parsing, retries, timeouts) runs offline as with a real model.
:class:`~jupyter_agentmem.testing.FakeModelServer` builds on this class with a
queue of scripted replies, cassettes and a recording proxy.

Stdlib only. It binds 127.0.0.1 (port 0 = a free port), serves each connection
on a daemon thread, never prints (a print from a thread lands in whichever
notebook cell is running), never stores request headers, and :meth:`stop`
leaves no thread behind.
"""

from __future__ import annotations

import itertools
import json
import threading
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from .loopback import JOIN_TIMEOUT, LoopbackHTTPServer, shutdown_socket
from .reply import DemoReply, demo_reply
from .wire import CREATED, Error, Payloads, Text, ToolCalls, error_body

__all__ = ["DemoServer", "LoopbackHTTPServer", "ModelHandler", "Responder", "shutdown_socket"]

#: A model as a function: request body in, :class:`~.reply.DemoReply` out.
Responder = Callable[[Mapping[str, Any]], DemoReply]

_MAX_MODELS = 100  # names listed by GET /v1/models (bounded: they come from requests)


class DemoServer:
    """Serves ``POST /v1/chat/completions`` with a responder (the demo model by default).

    ``delay`` / ``chunk_size`` pace the streamed answer (realistic by default; use
    ``delay=0`` in tests). Subclasses choose another reply per request by
    overriding :meth:`next_reply` and extend :class:`ModelHandler` to serve it.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        responder: Responder | None = demo_reply,
        delay: float = 0.015,
        chunk_size: int = 5,
        max_requests_kept: int = 0,
    ) -> None:
        self._port = port
        self._responder = responder
        self._demo_delay = delay
        self._demo_chunk_size = chunk_size
        self._lock = threading.Lock()
        self._requests: deque[dict[str, Any]] = deque(maxlen=max_requests_kept)
        self._request_count = 0
        self._disconnects = 0
        self._models_seen: dict[str, None] = {"demo": None}
        self._call_ids = itertools.count(1)
        self._errors: deque[str] = deque(maxlen=50)
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    handler_class: type[ModelHandler]  # set below, once ModelHandler exists
    #: Threads are named ``PREFIX:port`` (leak checks look for it).
    THREAD_PREFIX = "agentmem-demo"

    # -- life cycle -------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Hook run by :meth:`start` (under the lock) before binding; may raise."""

    def start(self) -> DemoServer:
        """Bind and serve on a daemon thread; idempotent. Returns ``self`` for chaining."""
        with self._lock:
            if self._httpd is not None:
                return self
            self._prepare()
            self.stopping = threading.Event()
            httpd = LoopbackHTTPServer(("127.0.0.1", self._port), self, self.handler_class)
            port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.THREAD_PREFIX}:{port}",
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
            thread.join(JOIN_TIMEOUT)

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started: call start() or use `with`")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, ready for ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

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
            if isinstance(model, str) and model and len(self._models_seen) < _MAX_MODELS:
                self._models_seen[model] = None
            return self._request_count

    def next_reply(self, body: Mapping[str, Any]) -> Any:
        """What answers this request (the handler serves it); here: the responder's answer."""
        return self.respond(body)

    def respond(self, body: Mapping[str, Any]) -> Text | ToolCalls | Error:
        """Ask the responder and turn its answer into a paced reply; its failure is a 500."""
        if self._responder is None:
            return Error(500, "this server has no responder", (), "server_error", "no_responder")
        try:
            answer = self._responder(body)
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


class ModelHandler(BaseHTTPRequestHandler):
    """Serves one request per connection (``Connection: close``), streaming in HTTP chunks.

    Chunked transfer encoding is what lets the client tell a finished stream from
    a dropped one: a socket closed before the final zero-length chunk is an error.
    """

    protocol_version = "HTTP/1.1"
    server_version = "jupyter-agentmem-fake/1"

    @property
    def owner(self) -> DemoServer:
        return cast(DemoServer, cast(LoopbackHTTPServer, self.server).owner)

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
            self.send_json(200, json.dumps({"object": "list", "data": data}).encode())
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
            self.send_json(
                400, error_body("request body is not a JSON object", "invalid_request_error")
            )
            return
        seq = self.owner.receive(body)
        self.answer(self.owner.next_reply(body), raw, body, seq)

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _not_found(self) -> None:
        message = f"Unknown endpoint {self.command} {self.path.split('?')[0]}"
        self.send_json(404, error_body(message, "invalid_request_error", "unknown_url"))

    def answer(self, reply: Any, raw: bytes, body: Mapping[str, Any], seq: int) -> None:
        """Serve what :meth:`DemoServer.next_reply` chose (subclasses add kinds)."""
        out = Payloads(body, seq)
        stream = bool(body.get("stream"))
        if isinstance(reply, Error):
            data = error_body(reply.message, reply.type, reply.code)
            self.send_json(reply.status, data, reply.headers)
        elif isinstance(reply, Text):
            if stream:
                self.stream(out.text_events(reply), reply.delay)
            else:
                self.send_json(200, json.dumps(out.text_completion(reply)).encode())
        elif isinstance(reply, ToolCalls):
            ids = [cid or self.owner.next_call_id() for cid, _, _ in reply.calls]
            if stream:
                self.stream(out.tool_events(reply, ids), reply.delay)
            else:
                self.send_json(200, json.dumps(out.tool_completion(reply, ids)).encode())
        else:
            raise TypeError(f"cannot serve reply {reply!r}")

    # -- low-level writing --------------------------------------------------------------------

    def send_json(
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
        self.write(data)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def write(self, data: bytes) -> bool:
        """Write and flush; ``False`` (and counted) when the client has gone away."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except OSError:
            self.owner.note_disconnect()
            self.close_connection = True
            return False

    def event(self, payload: str) -> bool:
        """One SSE ``data:`` event as one HTTP chunk."""
        data = f"data: {payload}\n\n".encode()
        return self.write(b"%X\r\n%s\r\n" % (len(data), data))

    def stream(self, events: Sequence[str], delay: float = 0.0) -> None:
        """Send SSE events ``delay`` seconds apart, flushing each; end the chunked body."""
        self.start_stream()
        for n, payload in enumerate(events):
            if n and delay > 0 and self.owner.stopping.wait(delay):
                return
            if not self.event(payload):
                return
        self.end_stream()

    def end_stream(self) -> None:
        self.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Close the connection abruptly (no final chunk): the client sees a broken body."""
        shutdown_socket(self.connection)


DemoServer.handler_class = ModelHandler
