"""The README is part of the product: its commands and references must not drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_magics_reference_is_generated_from_the_code() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/readme_magics.py", "--check"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^\s*(scripts/\w+)\s*$", README, flags=re.M)
    assert commands[:2] == ["scripts/lab", "scripts/test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^scripts/test$", ci, flags=re.M)


def test_every_config_trait_is_documented() -> None:
    from jupyter_agentmem.agent.settings import AgentMem

    for name in AgentMem().settable():
        assert f"`{name}`" in README, f"c.AgentMem.{name} is not in the README"
