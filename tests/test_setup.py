"""What a newcomer runs installs what the notebooks need; the README's test commands work.

``scripts/lab`` installs the ``[notebooks]`` extra. Every module a notebook imports
must come from the standard library, this package, its dependencies or that extra,
or the notebook fails on a fresh machine (as 02 did on ``import matplotlib``).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager

from . import test_soak_smoke

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def notebook_imports(path: Path) -> set[str]:
    """Top-level modules the notebook's code cells import (magics lines left out)."""
    modules: set[str] = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if source.startswith("%%"):
            continue  # a cell magic's body is not Python
        code = TransformerManager().transform_cell(source)  # `x = %magic` too, as IPython does
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules


def test_the_notebooks_extra_covers_every_notebook_import() -> None:
    project = PYPROJECT["project"]
    installed = {requirement_name(s) for s in project["dependencies"]}
    installed |= {requirement_name(s) for s in project["optional-dependencies"]["notebooks"]}
    dists = packages_distributions()
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 6
    missing = {}
    for path in notebooks:
        for module in notebook_imports(path) - set(sys.stdlib_module_names) - {"jupyter_agentmem"}:
            names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
            if not names & installed:
                missing[f"{path.name}: import {module}"] = sorted(names)
    assert not missing, f"add to the [notebooks] extra in pyproject.toml: {missing}"


def test_scripts_install_the_notebooks_extra() -> None:
    setup = (REPO / "scripts" / "setup").read_text()
    assert 'pip install -q -e ".[$extra]"' in setup
    assert "extra=notebooks" in setup  # scripts/lab
    assert '[ "${1:-}" != "--test" ] || extra=dev' in setup  # scripts/test
    dev = {requirement_name(s) for s in PYPROJECT["project"]["optional-dependencies"]["dev"]}
    assert "jupyter-agentmem" in dev  # as jupyter-agentmem[notebooks]
    assert "jupyter-agentmem[notebooks]" in PYPROJECT["project"]["optional-dependencies"]["dev"]


def test_readme_fast_subset_uses_registered_markers_and_leaves_out_the_soak() -> None:
    readme = (REPO / "README.md").read_text()
    command = re.search(r'pytest -m "([^"]+)" tests', readme)
    assert command, "the README shows how to run the fast subset"
    used = set(re.findall(r"not (\w+)", command.group(1)))
    registered = {m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    assert used == {"browser", "kernel", "redis", "soak"} and used <= registered
    marks = {m.name for m in test_soak_smoke.test_soak_smoke_rss_stays_flat.pytestmark}
    assert "soak" in marks
