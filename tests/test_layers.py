"""The architecture is a contract: layers import only downward, no circles, no test harness
in the product (``[tool.importlinter]`` in pyproject.toml), and a terminal never loads widgets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = (
    "Layers: each sub-package imports only the ones below it",
    "The product never imports its test harness",
    "No import circles between sibling modules or sub-packages",
)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = run([str(lint), "--no-cache", "--no-logo"])
    assert out.returncode == 0, out.stdout + out.stderr
    for name in CONTRACTS:  # each contract really ran (a renamed or dropped one fails here)
        assert f"{name} KEPT" in out.stdout, out.stdout


def test_loading_the_extension_in_a_terminal_imports_no_widgets_and_no_test_harness() -> None:
    code = (
        "import sys\n"
        "import jupyter_agentmem.notebook.extension, jupyter_agentmem.notebook.memory_magics\n"
        "import jupyter_agentmem.demo\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ipywidgets'"
        " or m.startswith('jupyter_agentmem.testing')))\n"
    )
    out = run([sys.executable, "-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
