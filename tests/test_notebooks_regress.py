"""The notebooks are regression tests with teeth.

``pytest`` runs every ``notebooks/*.ipynb`` under nbval (see ``pyproject.toml``).
This proves that such a run fails when an agent's answer changes: a copy of the
quickstart whose stored ``%%agent`` answer (the cell's ``Out[n]``) was edited
fails, in that cell only and with the edited text in the report, while an
unedited copy run the same way passes. A sanitiser or an ignore marker that hid
answers would make this test fail.

nbval runs in a subprocess (its own pytest session, with the repository's pytest
settings and the folder's sanitisers), so the test sees its real verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SANITIZE = NOTEBOOKS / "sanitize.cfg"
QUICKSTART = NOTEBOOKS / "01-quickstart.ipynb"
EDIT = " And one sentence the model never said."

pytestmark = pytest.mark.kernel


def run_nbval(paths: list[Path], tmp_path: Path, timeout: float = 900) -> tuple[int, str, Path]:
    """``pytest --nbval`` on ``paths`` as CI runs it; returns (exit code, output, junit xml)."""
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENTMEM_MODEL", "MEM_LIMIT"):
        env.pop(name, None)  # the notebooks must pass without a key, on the demo model
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["IPYTHONDIR"] = str(tmp_path / "ipython")  # no user ipython_config.py settings
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter-data")
    junit = tmp_path / "nbval.xml"
    command = [
        sys.executable, "-m", "pytest",
        "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
        "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
        "-p", "no:cacheprovider", "-q", f"--junitxml={junit}",
        *map(str, paths),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout + done.stderr, junit


def cell_results(junit: Path) -> dict[tuple[str, str], str | None]:
    """(notebook path, "Cell N") -> None if it passed, else the failure report."""
    results: dict[tuple[str, str], str | None] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        report = None if problem is None else (problem.get("message", "") + (problem.text or ""))
        results[(case.get("classname", ""), case.get("name", ""))] = report
    return results


def edit_first_answer(notebook: Path) -> str:
    """Change the stored answer (``Out[n]``) of the first ``%%agent`` cell; return its source."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        if not source.startswith("%%agent"):
            continue
        results = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
        assert results, f"the %%agent cell {source!r} has no stored Out[n] to compare"
        data = results[0]["data"]
        for mime in ("text/plain", "text/markdown"):
            text = "".join(data[mime])
            data[mime] = text + EDIT
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return source
    raise AssertionError(f"no %%agent cell in {notebook}")


def test_a_changed_agent_answer_fails_the_notebook_and_the_original_passes(
    tmp_path: Path,
) -> None:
    original = tmp_path / "original" / QUICKSTART.name
    changed = tmp_path / "changed" / QUICKSTART.name
    for copy in (original, changed):
        copy.parent.mkdir()
        shutil.copy(QUICKSTART, copy)
    edited_source = edit_first_answer(changed)

    code, output, junit = run_nbval([original, changed], tmp_path)

    assert code == 1, f"nbval should fail on the edited copy (exit {code}):\n{output[-4000:]}"
    results = cell_results(junit)
    original_cells = {name: r for (cls, name), r in results.items() if "original" in cls}
    changed_cells = {name: r for (cls, name), r in results.items() if "changed" in cls}
    assert original_cells and len(original_cells) == len(changed_cells), results.keys()
    assert all(report is None for report in original_cells.values()), original_cells
    failed = {name: report for name, report in changed_cells.items() if report is not None}
    assert len(failed) == 1, f"exactly the edited cell should fail, got {sorted(failed)}"
    report = next(iter(failed.values()))
    assert "Cell outputs differ" in report, report[-3000:]
    assert EDIT.strip() in report, report[-3000:]  # the edited answer, reported as such
    assert edited_source.splitlines()[0] in report, report[-3000:]
