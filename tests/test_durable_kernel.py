"""Real kernels killed with SIGKILL (what the OOM killer sends), and notebooks kept apart.

Each kernel gets ``JPY_SESSION_NAME`` as jupyter_server would set it, the offline
demo model (real SDK over loopback) and the default SQLite store in its Jupyter
data directory, or a real ``redis-server``.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import redis_server as server_helper
from .kernel import Execution, Kernel
from .redis_server import RedisServer

redis_server = server_helper.redis_server  # the module-scoped fixture

SETUP = (
    "get_ipython().config.AgentMem.demo_delay = {delay}\n"
    "{store}"
    "%load_ext jupyter_agentmem\n"
    "from jupyter_agentmem import get_manager\n"
    "from jupyter_agentmem.notebook.namespace import session_id\n"
)


def start(tmp: Path, notebook: str, store_url: str = "", delay: float = 0.0) -> Kernel:
    kernel = Kernel(tmp, {"JPY_SESSION_NAME": str(tmp / notebook)})
    store = f"get_ipython().config.AgentMem.store_url = {store_url!r}\n" if store_url else ""
    kernel.ok(SETUP.format(delay=delay, store=store))
    return kernel


def kill9(kernel: Kernel) -> None:
    """SIGKILL the kernel process: no shutdown request, no atexit, no flush."""
    pid = kernel.manager.provisioner.pid  # type: ignore[union-attr]
    kernel.client.stop_channels()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while kernel.manager.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not kernel.manager.is_alive()
    kernel.manager.cleanup_resources()


def contents(kernel: Kernel, name: str = "default") -> list[str]:
    return list(
        kernel.value(
            f"[m['content'] for m in get_manager().get_or_create(session_id({name!r}))"
            ".get_context() if m['role'] != 'system']"
        )
    )


def shown(run: Execution) -> str:
    """The text of everything a cell displayed."""
    return "\n".join(
        str(m["content"]["data"].get("text/plain", "")) for _, m in run.of_type("display_data")
    )


@pytest.fixture
def kernels() -> Iterator[list[Kernel]]:
    started: list[Kernel] = []
    yield started
    for kernel in started:
        if kernel.manager.is_alive():
            kernel.shutdown()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_three_finished_turns_survive_kill_9(
    tmp_path: Path, kernels: list[Kernel], backend: str, request: pytest.FixtureRequest
) -> None:
    url = ""
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.resume()
        server.start()
        url = server.url
    first = start(tmp_path, "analysis.ipynb", url)
    kernels.append(first)
    for i in range(3):
        first.ok(f"%%agent\nquestion {i}")
    kill9(first)
    second = start(tmp_path, "analysis.ipynb", url)
    kernels.append(second)
    run = second.ok("%%agent\nWhat did I ask?")
    assert "continuing session 'default': 6 earlier messages, last active" in run.stdout
    got = contents(second)
    assert got[0:6:2] == ["question 0", "question 1", "question 2"]
    assert all("(demo model)" in answer for answer in got[1:7:2])
    assert got[6] == "What did I ask?" and len(got) == 8


def test_a_kill_during_a_stream_stores_nothing_half(tmp_path: Path, kernels: list[Kernel]) -> None:
    first = start(tmp_path, "slow.ipynb", delay=0.05)
    kernels.append(first)
    first.ok("%%agent\nfinished question")
    msg_id = first.client.execute("%%agent\nunfinished question", allow_stdin=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the answer is visibly streaming
        try:
            msg = first.client.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "update_display_data"
            and "demo model" in str(msg["content"])
        ):
            break
    else:
        pytest.fail("the answer never started streaming")
    kill9(first)
    second = start(tmp_path, "slow.ipynb")
    kernels.append(second)
    got = contents(second)
    assert got[0] == "finished question" and len(got) == 2, got
    assert "unfinished question" not in got


def test_notebooks_keep_their_own_default_session_and_share_explicitly(
    tmp_path: Path, kernels: list[Kernel]
) -> None:
    a = start(tmp_path, "a.ipynb")
    b = start(tmp_path, "b.ipynb")
    kernels += [a, b]
    a.ok("%%agent -s default\nsecret plan of A")
    run = b.ok("%%agent -s default\nhello from B")
    assert "continuing session" not in run.stdout
    assert contents(b) == ["hello from B", contents(b)[1]] and "secret" not in str(contents(b))
    listed = shown(b.ok("%agent_memory sessions"))
    assert "1 of 1 sessions" in listed and "a.ipynb" not in listed
    everything = shown(b.ok("%agent_memory sessions --all"))
    assert "a.ipynb" in everything and "b.ipynb" in everything

    a.ok("%%agent -s team:churn\nshared note from A")
    run = b.ok("%%agent -s team:churn\nand B adds this")
    assert "continuing session 'team:churn': 2 earlier messages" in run.stdout
    shared = contents(b, "team:churn")
    assert shared[0] == "shared note from A" and shared[2] == "and B adds this"
