"""Run one of our benchmark functions against another checkout's ``jupyter_agentmem``.

Why: on a shared machine absolute figures move with the load by ±30 % between
minutes, so a before/after claim needs both measured in the same run,
alternating. This runs ``benchmarks.<module>.<function>(**kwargs)`` from *this*
tree (the same benchmark code for both) in a fresh interpreter whose
``jupyter_agentmem`` is imported from ``tree`` (or from this tree when ``tree``
is empty), and returns the function's JSON-able result.

Used as ``python -m benchmarks.against TREE MODULE FUNCTION JSON_KWARGS`` by
:func:`run`; each call prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run(tree: str, module: str, function: str, **kwargs: Any) -> Any:
    """``benchmarks.<module>.<function>(**kwargs)`` in a child with ``tree``'s package."""
    command = [sys.executable, "-m", "benchmarks.against", tree, module, function]
    done = subprocess.run(
        [*command, json.dumps(kwargs)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module}.{function} against {tree or 'this tree'}: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(tree: str, module: str, function: str, kwargs: str) -> None:
    import benchmarks  # noqa: F401  (this tree's: imported before the other tree is on the path)
    import tests  # noqa: F401

    if tree:
        sys.path.insert(0, os.path.abspath(tree))
    import jupyter_agentmem

    where = Path(jupyter_agentmem.__file__).resolve().parent.parent
    if tree and where != Path(tree).resolve():
        raise SystemExit(f"jupyter_agentmem came from {where}, not {tree}")
    target = getattr(__import__(f"benchmarks.{module}", fromlist=[function]), function)
    print(json.dumps(target(**json.loads(kwargs))))


if __name__ == "__main__":
    _child(*sys.argv[1:5])
