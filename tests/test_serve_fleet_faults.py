"""Faults of a fleet: an instance killed with SIGKILL mid-stream, Redis restarted under load.

The killed instance is a real ``python -m jupyter_agentmem serve`` process; the
survivor is a real uvicorn in this process; both on one real redis-server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_agentmem.testing import FakeModelServer

from . import redis_server as server_helper
from .redis_server import RedisServer
from .serve_helpers import ALICE, Event, chat, parse_sse, text_of
from .test_serve_cli import free_port
from .test_serve_fleet import instance, messages

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server
REPO = Path(__file__).resolve().parent.parent


def spawn(
    tmp: Path, model: FakeModelServer, store: str, tokens: Path, *extra: str
) -> tuple[Any, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "IPYTHONDIR": str(tmp / "ipython"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "sk-test",
        "AGENTMEM_MODEL": "m",
    }
    command = [sys.executable, "-m", "jupyter_agentmem", "serve", "--port", str(port)]
    command += ["--store", store, "--tokens-file", str(tokens), "--lease-ttl", "3", *extra]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start")


def test_an_instance_killed_mid_stream_loses_its_lease_and_never_half_stores(
    tmp_path: Path, model: FakeModelServer, redis_server: RedisServer
) -> None:
    redis_server.start()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} alice\n")
    proc, url = spawn(tmp_path, model, redis_server.url, tokens)
    survivor = instance(model, redis_server.url, "agentmem:")  # the CLI's default prefix
    headers = {"Authorization": f"Bearer {ALICE}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as a:
            model.enqueue_text("a0")
            assert chat(a, "k", "q0")[-1].data["text"] == "a0"
            model.enqueue_text("x" * 400, chunk_size=4, delay=0.05)  # 5 s: killed long before
            got: list[Event] = []
            with a.stream("POST", "/chat", json={"session": "k", "message": "q1"}) as response:
                for event in parse_sse(response.iter_lines()):
                    got.append(event)
                    if len(got) == 4:
                        proc.send_signal(signal.SIGKILL)
                        break
        proc.wait(5)
        killed = time.monotonic()
        run_id = got[0].data["run_id"]
        with survivor.client(ALICE) as b:
            busy = b.post("/chat", json={"session": "k", "message": "q2"})
            assert busy.status_code == 409  # the dead instance's lease has not expired yet
            resumed = list(
                parse_sse(
                    b.get(
                        f"/runs/{run_id}/events", headers={"Last-Event-ID": got[-1].id or "0"}
                    ).iter_lines()
                )
            )
            assert resumed[-1].event == "error" and "may have died" in resumed[-1].data["message"]
            model.enqueue_text("a2")
            after = chat(b, "k", "q2", multitask="enqueue")  # waits for the lease to expire
            assert time.monotonic() - killed < 10
        assert text_of(after) == "a2"
        assert messages(survivor, "k") == ["q0", "a0", "q2", "a2"]  # q1: not at all, not half
    finally:
        if proc.poll() is None:
            proc.kill()
        survivor.close()
        survivor.agent.close()


def test_redis_restarted_under_load_keeps_held_sessions_and_writes_them_later(
    model: FakeModelServer, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.start()
    prefix = f"r{uuid.uuid4().hex[:6]}:"
    a, b = (instance(model, redis_server.url, prefix, timeout=0.5) for _ in range(2))
    for served in (a, b):
        served.agent.manager.create_offline = True  # what `serve --store redis://` sets
    caplog.set_level(logging.WARNING)
    try:
        with a.client(ALICE) as client:
            model.enqueue_text("before")
            chat(client, "held", "q-before")
            redis_server.stop(kill=True)  # empty when it comes back (no persistence)
            for i in range(3):  # A keeps answering the session it holds, and a new one
                model.enqueue_text(f"during {i}")
                assert text_of(chat(client, "held", f"q{i}")) == f"during {i}"
            model.enqueue_text("new while down")
            assert text_of(chat(client, "fresh", "hello")) == "new while down"
            warnings = [r.getMessage() for r in caplog.records if "persist" in r.getMessage()]
            assert len(warnings) == 1  # warned once, not per turn
            redis_server.start()
            time.sleep(0.2)
            model.enqueue_text("after")
            chat(client, "held", "q-after")  # its save now writes every queued turn
            model.enqueue_text("fresh again")
            chat(client, "fresh", "again")
        expected = ["q-before", "before"]
        expected += [x for i in range(3) for x in (f"q{i}", f"during {i}")]
        assert messages(b, "held") == [*expected, "q-after", "after"]
        assert messages(b, "fresh") == ["hello", "new while down", "again", "fresh again"]
    finally:
        redis_server.start()
        for served in (a, b):
            served.close()
            served.agent.close()
