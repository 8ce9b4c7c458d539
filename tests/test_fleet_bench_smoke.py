"""The fleet load test in its short form: two instances over one redis-server lose no message.

It runs ``python -m benchmarks.bench_fleet --quick`` (a few seconds of load, real
processes on loopback) and checks the verdicts, not the speed: no error besides
the expected 409s of the hot session, no message lost for ours, while the
article's per-process dict behind the same instances loses messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis
REPO = Path(__file__).resolve().parent.parent


def test_fleet_quick_loses_nothing_and_the_article_recipe_does(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_fleet", "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ours, naive = json.loads(out.read_text())
    assert ours["kind"] == "ours" and naive["kind"] == "naive"
    assert ours["turns"] >= 40 and ours["errors"] == 0 and ours["lost"] == 0
    assert ours["conflicts_409"] > 0  # the hot session was really contended, fleet-wide
    assert naive["lost"] > 0  # sessions in a per-process dict do not survive a hop
