"""A real ``redis-server`` for tests and benchmarks, with the faults we must survive.

It runs on 127.0.0.1 and a free port with no persistence, and can be killed,
restarted on the *same* port (so clients holding the URL reconnect), and
paused with SIGSTOP (a server that accepts connections but never answers,
the worst case for timeouts). No mocks: the store is tested against the
same server it meets in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = (
    "redis-server not found: apt-get install redis-server (Debian/Ubuntu), "
    "brew install redis (macOS) or put redis-server on PATH; the Redis tests need a real server"
)


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis on ``port`` answers PING (raw RESP, no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process that can be stopped, restarted and paused."""

    def __init__(self, executable: str, directory: Path, port: int | None = None) -> None:
        self.executable = executable
        self.directory = Path(directory)
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._resume_timer: threading.Timer | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until PING works."""
        if self.running:
            return
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *("--dir", str(self.directory)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(kill=True)
                tail = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        """Terminate (SIGTERM) or, with ``kill``, crash it (SIGKILL); its data is gone."""
        self.resume()
        if self.process is not None:
            if self.process.poll() is None:
                if kill:
                    self.process.kill()
                else:
                    self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def pause(self, seconds: float) -> None:
        """Freeze the server (SIGSTOP) for ``seconds``; returns at once. Connections
        are still accepted by the kernel, but nothing is answered until it resumes."""
        if self.process is None:
            raise RuntimeError("redis-server is not running")
        os.kill(self.process.pid, signal.SIGSTOP)
        self._resume_timer = threading.Timer(seconds, self.resume)
        self._resume_timer.daemon = True
        self._resume_timer.start()

    def resume(self) -> None:
        """Undo :meth:`pause` now (idempotent)."""
        timer, self._resume_timer = self._resume_timer, None
        if timer is not None:
            timer.cancel()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_redis_server() -> str | None:
    """``redis-server`` on PATH, or in the Debian location when PATH is minimal."""
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the test module; fails (never skips) without one."""
    executable = find_redis_server()
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
