"""The state and its manager meet only at a public seam (``memory/owner.py``).

A state is a value; the manager owns it. Neither reaches into the other's private
attributes: this reads the engine's own code, so a shortcut added later fails here
with the line that took it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MEMORY = Path(__file__).resolve().parent.parent / "jupyter_agentmem" / "memory"
MANAGER_SIDE = ["manager.py", "eviction.py", "books.py", "persist.py", "stats.py"]
STATE_SIDE = ["state.py", "compaction.py", "document.py", "owner.py"]


def private_uses(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls`` (dunders are fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("name", MANAGER_SIDE + STATE_SIDE)
def test_no_private_attribute_is_reached_across_the_seam(name: str) -> None:
    assert private_uses(MEMORY / name) == []


def test_the_state_side_never_imports_the_manager_side() -> None:
    for name in STATE_SIDE:
        tree = ast.parse((MEMORY / name).read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not modules & {m.removesuffix(".py") for m in MANAGER_SIDE if m != "stats.py"}, name
