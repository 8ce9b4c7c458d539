"""A notebook whose requirements are missing says so once and stops "Run All" there.

Notebook 05 needs a ``redis-server`` executable and redis-py. Without them a newcomer
used to get an error in every one of its cells. These tests run the notebook as
JupyterLab's "Run All" does: every code cell sent at once to a real kernel with
``stop_on_error``, so the kernel aborts the cells queued behind a failing one. The
first code cell must fail with one message naming the install commands (no
traceback), and no other cell may run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from .kernel import REPO, Kernel

NOTEBOOK = REPO / "notebooks" / "05-shared-sessions-with-redis.ipynb"

pytestmark = pytest.mark.kernel


def code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def run_all(kernel: Kernel, cells: list[str]) -> list[dict[str, Any]]:
    """Queue every cell as "Run All" does; return the shell replies in order.

    A first request keeps the kernel busy for a moment, so every cell is queued
    before one fails: the kernel aborts only what is queued at that time.
    """
    kernel.client.execute("import time; time.sleep(1)", allow_stdin=False)
    ids = [kernel.client.execute(code, allow_stdin=False, stop_on_error=True) for code in cells]
    replies: dict[str, dict[str, Any]] = {}
    while len(replies) < len(ids):
        reply = kernel.client.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") in ids:  # not a late kernel_info reply
            replies[reply["parent_header"]["msg_id"]] = reply["content"]
    return [replies[i] for i in ids]


def check_stops_at_first_cell(replies: list[dict[str, Any]], *needles: str) -> None:
    first, rest = replies[0], replies[1:]
    assert first["status"] == "error", first
    assert first["ename"] == "MissingRequirement"
    for needle in needles:
        assert needle in first["evalue"], first["evalue"]
    # The message alone, not a traceback through the notebook's source.
    assert first["traceback"] == [first["evalue"]]
    assert len(rest) >= 10 and {r["status"] for r in rest} == {"aborted"}, rest


def test_missing_redis_server_is_named_once_and_nothing_else_runs(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    kernel = Kernel(tmp_path, env={"PATH": str(empty_bin)})
    try:
        replies = run_all(kernel, code_cells())
    finally:
        kernel.shutdown()
    check_stops_at_first_cell(
        replies,
        "redis-server",
        "apt-get install redis-server",
        "brew install redis",
        "conda install -c conda-forge redis-server",
    )


def test_missing_redis_py_is_named_once_and_nothing_else_runs(tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    assert server is not None, "the test suite needs redis-server (scripts/test installs it)"
    bin_dir, shadow = tmp_path / "bin", tmp_path / "shadow"
    bin_dir.mkdir()
    shadow.mkdir()
    (bin_dir / "redis-server").symlink_to(server)
    # A module named redis that fails to import, first on the path: redis-py "missing".
    (shadow / "redis.py").write_text("raise ImportError('No module named redis')\n")
    path = os.pathsep.join([str(shadow), str(REPO), os.environ.get("PYTHONPATH", "")])
    kernel = Kernel(tmp_path, env={"PATH": str(bin_dir), "PYTHONPATH": path.rstrip(os.pathsep)})
    try:
        replies = run_all(kernel, code_cells())
    finally:
        kernel.shutdown()
    check_stops_at_first_cell(replies, "redis-py", "pip install 'jupyter-agentmem[notebooks]'")


def test_with_everything_installed_the_check_passes(tmp_path: Path) -> None:
    """The same first cell lets the notebook go on when redis-server and redis-py exist."""
    assert shutil.which("redis-server") is not None
    kernel = Kernel(tmp_path)
    try:
        out = kernel.ok(code_cells()[0])
    finally:
        kernel.shutdown()
    assert out.stdout == "redis-server and redis-py found\n"
