"""%%agent in a terminal IPython (no kernel, no widgets): one answer, no update spam."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_terminal_ipython_prints_the_answer_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENTMEM_"))}
    env.update(
        JUPYTER_DATA_DIR=str(tmp_path), IPYTHONDIR=str(tmp_path / "ipy"), PYTHONPATH=str(REPO)
    )
    code = (
        "%load_ext jupyter_agentmem\n"
        "answer = get_ipython().run_cell_magic('agent', '-s term', 'hello from a terminal')\n"
        "print('ANSWER-START', answer, 'ANSWER-END')\n"
        "%agent_memory stats\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "demo model: set OPENAI_API_KEY" in out.stdout  # the one-time notice
    assert out.stdout.count("You said") == 1, out.stdout  # no streamed repeats
    assert "ANSWER-START (demo model)" in out.stdout
    assert "sessions_in_memory" in out.stdout or "sessions in memory" in out.stdout
