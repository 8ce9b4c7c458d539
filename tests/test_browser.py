"""End to end: JupyterLab + Debian Chromium (Playwright) show the live dashboard, and its
RSS figure keeps changing while another cell allocates memory.

Started by the test itself: a JupyterLab server on 127.0.0.1 (free port, token,
temporary root, the repository on PYTHONPATH for the kernel).  A browser that
cannot start is a failure, never a skip.  ``AGENTMEM_UPDATE_SCREENSHOT=1`` saves
``docs/dashboard.png``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
# The committed picture is refreshed only on request, so a test run leaves the tree clean.
SCREENSHOT_TO_DOCS = os.environ.get("AGENTMEM_UPDATE_SCREENSHOT") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CELLS = [
    "%load_ext jupyter_agentmem\n"
    "from jupyter_agentmem.notebook.extension import get_context\n"
    "for i in range(12):\n"
    "    get_context().manager.get_or_create(f'analysis-{i}').add_message(\n"
    "        {'role': 'user', 'content': 'summarise the sales table ' * (i + 1)})\n"
    "%agent_memory --interval 0.5",
    "import time\n"
    "blocks = []\n"
    "for step in range(16):  # ~352 MiB in steps, while the dashboard keeps updating\n"
    "    blocks.append(bytearray(22 * 2**20))\n"
    "    time.sleep(0.5)\n"
    "print('allocated', len(blocks) * 22, 'MiB')",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


AGENT_CELLS = [
    "%load_ext jupyter_agentmem\n"
    "from jupyter_agentmem import agent_tool\n"
    "from jupyter_agentmem.notebook.extension import get_context\n"
    "get_context().config.demo_delay = 0.06  # slow enough to watch the stream\n"
    "SALES = [{'region': r, 'units': 10 * i} for i, r in enumerate(['north', 'south', 'east'])]\n"
    "\n"
    "@agent_tool\n"
    "def sales_table(region: str) -> list:\n"
    "    'Rows of the sales table for one region.'\n"
    "    return [row for row in SALES if row['region'] == region]",
    "%%agent -s browser\n"
    "Please call sales_table for region 'north' and tell me what you found, in detail, "
    "so this answer is long enough to watch it stream into the notebook cell.",
]


def notebook(path: Path, sources: list[str] = CELLS) -> None:
    cells = [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
        for src in sources
    ]
    path.write_text(
        json.dumps(
            {
                "cells": cells,
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {
                    "kernelspec": {
                        "name": "python3",
                        "display_name": "Python 3 (ipykernel)",
                        "language": "python",
                    }
                },
            }
        )
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab server; yields the notebook URL (with token)."""
    root = tmp_path / "root"
    root.mkdir()
    notebook(root / "dashboard.ipynb")
    notebook(root / "agent.ipynb", AGENT_CELLS)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    )
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(var, None)
    env["MEM_LIMIT"] = "480M"  # as JupyterHub sets it: the bar climbs into "warning"
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--ServerApp.port_retries=0",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text())
                time.sleep(0.3)
        yield f"{base}/lab/tree/{{notebook}}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def rss_mib(text: str) -> float:
    match = re.search(r"RSS ([\d.]+) (MiB|GiB)", text)
    assert match, f"no RSS figure in {text!r}"
    return float(match.group(1)) * (1024 if match.group(2) == "GiB" else 1)


def run_all(page: Any, url: str) -> None:
    page.goto(url, timeout=60_000)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
    news = page.get_by_role("button", name="No")  # "Would you like to get notified..."
    if news.count():
        news.first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def launch(pw: Any, tmp_path: Path) -> Any:
    from playwright.sync_api import Error

    try:
        return pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1300},
        )
    except Error as exc:
        pytest.fail(
            f"Chromium could not start from {CHROMIUM} (is the Debian chromium "
            f"package installed?): {exc}"
        )


def test_agent_answer_streams_into_the_cell(lab: str, tmp_path: Path) -> None:
    """In real JupyterLab: the answer grows in place, then renders as the cell's result."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            run_all(page, lab.format(notebook="agent.ipynb"))
            outputs = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea")
            live = outputs.get_by_text("(demo model)")
            live.first.wait_for(timeout=60_000)
            shot = REPO / "docs" / "streaming.png" if SCREENSHOT_TO_DOCS else tmp_path / "s.png"
            lengths = []
            for i in range(8):
                lengths.append(len(outputs.inner_text()))
                if i == 2:
                    page.screenshot(path=str(shot))  # mid-stream
                time.sleep(0.1)
            assert len(set(lengths)) >= 3, f"the answer did not grow in place: {lengths}"
            assert "sales_table" in outputs.inner_text()  # the tool call is shown
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            result = page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-executeResult")
            result.wait_for(timeout=10_000)
            assert "north" in result.inner_text()  # the tool's rows reached the answer
            answer = result.inner_text()  # the footer sits under the answer, in the result
            # The footer, rendered from Markdown (the session name's backticks became <code>).
            footer = re.search(r"session browser · [\d,]+ → [\d,]+ tokens", answer)
            assert footer and answer.index("north") < footer.start(), answer
            assert result.locator("sub code", has_text="browser").count() == 1
        finally:
            browser.close()


def test_dashboard_updates_while_another_cell_runs(lab: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            run_all(page, lab.format(notebook="dashboard.ipynb"))
            rss = page.locator(".agentmem-dashboard .agentmem-rss")
            rss.wait_for(timeout=30_000)
            assert page.locator(".agentmem-dashboard .widget-hprogress").count() == 1
            samples: list[float] = []
            busy_seen = False
            for _ in range(14):  # ~7 s while the second cell allocates
                samples.append(rss_mib(rss.inner_text()))
                prompts = page.locator(".jp-InputArea-prompt").all_inner_texts()
                busy_seen |= prompts[-1:] == ["[*]:"]  # the allocating cell is running
                time.sleep(0.5)
            assert busy_seen, "the allocating cell was not running while we sampled"
            assert len(set(samples)) >= 4, f"RSS figure did not update: {samples}"
            assert samples[-1] - samples[0] > 60, f"RSS did not follow the allocation: {samples}"
            assert (
                "analysis-11"
                in page.locator(".agentmem-dashboard .agentmem-table").last.inner_text()
            )
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=30_000)
            bar = page.locator(".agentmem-dashboard .widget-hprogress .progress-bar")
            # ~352 MiB allocated under MEM_LIMIT=480M: past the 75 % warning level, whatever
            # the kernel's base size (the guard may even see "critical" on a big one)
            bar_class = bar.get_attribute("class") or ""
            assert "progress-bar-warning" in bar_class or "progress-bar-danger" in bar_class
            page.locator(".agentmem-dashboard").scroll_into_view_if_needed()
            shot = REPO / "docs" / "dashboard.png" if SCREENSHOT_TO_DOCS else tmp_path / "dash.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000  # a real rendering, not a blank page
