"""The HTTP transport of the demo model: a loopback server that can cut its connections.

``ThreadingHTTPServer`` alone cannot end a handler blocked on a socket, so
``DemoServer.stop()`` could hang on a streaming client; this one remembers every
connection (and any other socket a handler waits on) and shuts them down.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

__all__ = ["JOIN_TIMEOUT", "ConnectionOwner", "LoopbackHTTPServer", "shutdown_socket"]

#: Seconds ``stop()`` waits, in all, for the server's threads to end.
JOIN_TIMEOUT = 5.0


class ConnectionOwner(Protocol):
    """What the server needs of the model behind it (``DemoServer``)."""

    THREAD_PREFIX: str  #: names the connection threads

    def note_error(self) -> None: ...


class LoopbackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its live connections, so ``stop()`` can end them all."""

    daemon_threads = True
    request_queue_size = 128  # asyncio.gather of many sessions connects all at once

    def __init__(
        self,
        address: tuple[str, int],
        owner: ConnectionOwner,
        handler: type[BaseHTTPRequestHandler],
    ) -> None:
        self.owner = owner
        self._live_lock = threading.Lock()
        self._live: dict[threading.Thread, socket.socket] = {}
        self._extra_socks: set[socket.socket] = set()
        super().__init__(address, handler)

    def track_socket(self, sock: socket.socket | None, add: bool) -> None:
        """Remember (or forget) another socket a handler blocks on, so ``stop()`` cuts it too."""
        if sock is not None:
            with self._live_lock:
                (self._extra_socks.add if add else self._extra_socks.discard)(sock)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name=f"{self.owner.THREAD_PREFIX}:{self.server_address[1]}-conn",
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
        """Cut every open client and extra socket, then join the connection threads."""
        with self._live_lock:
            live = dict(self._live)
            socks = [*live.values(), *self._extra_socks]
        for sock in socks:
            shutdown_socket(sock)
        deadline = time.monotonic() + JOIN_TIMEOUT  # one bound for all, not one per thread
        for thread in live:
            thread.join(max(0.0, deadline - time.monotonic()))


def shutdown_socket(sock: socket.socket) -> None:
    """Shut a socket down both ways, ignoring an already-closed one (unblocks its reader)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
