"""A real 3-master Redis Cluster on loopback for tests (Debian's redis-server, no mocks).

Three ``redis-server --cluster-enabled yes`` processes, each in its own
directory and on a free port, joined by ``redis-cli --cluster create`` with no
replicas. Session-scoped: started once per test run, stopped at the end.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import INSTALL_HINT, find_redis_server, ping


def cluster_port() -> int:
    """A free port P below 55536 whose bus port P + 10000 is free too (Redis needs both)."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free pair of loopback ports for a Redis Cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            time.sleep(0.02)
            return b"cluster_state:ok" in sock.recv(4096)
    except OSError:
        return False


class RedisCluster:
    """Three masters on loopback; ``url`` is what ``open_store`` takes."""

    def __init__(self, executable: str, directory: Path, size: int = 3) -> None:
        self.executable = executable
        self.directory = Path(directory)
        self.ports = [cluster_port() for _ in range(size)]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 20.0) -> None:
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True, exist_ok=True)
            with open(node / "redis.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        [
                            self.executable,
                            *("--port", str(port), "--bind", "127.0.0.1"),
                            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                            *("--save", "", "--appendonly", "no", "--dir", str(node)),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + timeout
        while not all(ping(port) for port in self.ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                logs = [
                    (self.directory / str(p) / "redis.log").read_text()[-500:] for p in self.ports
                ]
                raise RuntimeError(f"cluster nodes did not start on {self.ports}: {logs}")
            time.sleep(0.05)
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [
                *(cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        while not all(_cluster_ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A private 3-master cluster for the whole test run; fails (never skips) without one."""
    executable = find_redis_server()
    if executable is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    cluster = RedisCluster(executable, tmp_path_factory.mktemp("cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
