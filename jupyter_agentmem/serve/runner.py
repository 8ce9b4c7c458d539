"""Run an app with uvicorn: in the foreground (CLI) or on a background thread (kernel, tests).

The background server binds its socket first (port 0 = a free port, known before
serving starts), runs ``uvicorn.Server`` on its own event loop in a daemon
thread, and :meth:`BackgroundServer.stop` asks uvicorn to exit (running the
app's shutdown: runs cancelled, partial answers stored), joins the thread and
frees the port. uvicorn logs nothing here: a thread printing into a notebook
lands in whichever cell is running.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from jupyter_agentmem.errors import ServeError

_START_TIMEOUT = 15.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (clear error when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """uvicorn serving ``app`` on a daemon thread; ``start()`` returns once it accepts."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.host = host
        self.app = app
        self._sock = bind(host, port)
        self.port = int(self._sock.getsockname()[1])
        settings = {"log_config": None, "access_log": False, "lifespan": "on", **options}
        self._server = uvicorn.Server(uvicorn.Config(app, **settings))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> BackgroundServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name=f"agentmem-serve:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServeError(f"the server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (app shutdown runs), then the port is free; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            served = getattr(getattr(self.app, "state", None), "agentmem", None)
            if served is not None:
                served.cancel_runs(timeout)
            self._server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():
                self._server.force_exit = True
                thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
