"""The soak benchmark in a short form, so a memory leak in the agent loop fails CI.

It runs ``python -m benchmarks.soak`` as a subprocess (a clean process, as the
soak needs: RSS is the measurement) for 1,500 turns, sampling every 100, and
relies on the script's own verdict: exit 1 with "LEAK" when RSS keeps growing
after warm-up while the live sessions stay bounded. The full 10,000-turn run is
``python -m benchmarks.soak``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.soak
@pytest.mark.timeout(150)
def test_soak_smoke_rss_stays_flat() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OPENAI_API_KEY", None)  # the loopback model needs no key
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.soak",
            "--turns",
            "1500",
            "--sample-every",
            "100",
            "--sessions",
            "60",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "OK: RSS slope after warm-up" in done.stdout, report
    assert "1,500 turns" in done.stdout, report
