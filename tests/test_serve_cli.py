"""`python -m jupyter_agentmem serve`: a real process and uvicorn, SIGTERM, the console script."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tomllib

from jupyter_agentmem.serve import cli

from .serve_helpers import ALICE, chat, text_of

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(tmp: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    out["PYTHONPATH"] = str(REPO)
    out["IPYTHONDIR"] = str(tmp / "ipython")  # no user profile leaks into the test
    out["JUPYTER_DATA_DIR"] = str(tmp / "data")
    return out


def start(tmp: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_agentmem", "serve", "--port", str(port), *args],
        env=env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not start")


@pytest.fixture
def tokens_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "tokens"
    path.write_text(f"# who may call\n{ALICE} alice\n")
    yield path


def test_serve_streams_and_sigterm_keeps_sessions(tmp_path: Path, tokens_file: Path) -> None:
    store = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    proc, url = start(tmp_path, "--store", store, "--tokens-file", str(tokens_file))
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ALICE}"}) as client:
            events = chat(client, "cli", "hello from the command line")
            assert events[-1].event == "done" and "demo model" in text_of(events)
            assert client.get("/sessions").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal as its exit status
        assert proc.wait(20) == -signal.SIGTERM
    assert proc.stdout is not None and "Application shutdown complete" in proc.stdout.read()
    proc, url = start(tmp_path, "--store", store, "--tokens-file", str(tokens_file))
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ALICE}"}) as client:
            view = client.get("/sessions/cli").json()
            assert view["messages"][0]["content"] == "hello from the command line"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--host", "0.0.0.0"], "--tokens-file"),
        (["--store", "nosuch://x"], "unknown store URL"),
        (["--tokens-file", "/nonexistent/tokens"], "No such file"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_refuses_bad_options_before_binding(tmp_path: Path, args: list[str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_agentmem", "serve", "--port", str(free_port()), *args],
        env=env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert words in done.stderr and done.stderr.startswith("jupyter-agentmem: ")


def test_config_file_sets_the_magics_settings(tmp_path: Path) -> None:
    path = tmp_path / "agentmem_config.py"
    path.write_text("c.AgentMem.model = 'demo'\nc.AgentMem.max_recent = 4\n")
    settings = cli.load_settings(str(path))
    assert settings.model == "demo" and settings.max_recent == 4


def test_console_script_points_at_main() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["jupyter-agentmem"].partition(":")
    assert module == "jupyter_agentmem.serve.cli" and getattr(cli, name) is cli.main
