"""{name} interpolation: once, safely, with bounded values."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from jupyter_agentmem.model.prompt import PromptError, describe_value, interpolate


class FakeFrame:
    """Duck-typed like a pandas DataFrame (shape, columns, head)."""

    shape = (1_000_000, 3)
    columns: ClassVar[list[str]] = ["id", "name", "price"]

    def head(self, n: int) -> Any:
        class Head:
            def to_string(self) -> str:
                return "\n".join(f"{i} item{i} {i * 1.5}" for i in range(n))

        return Head()

    def __repr__(self) -> str:  # pragma: no cover - must never be used
        raise AssertionError("the full repr of a big table must not be built")


def test_fields_are_interpolated_once() -> None:
    ns = {"x": "a{y}b", "y": 2, "d": {"k": [1, 2]}, "n": 3.14159}
    out = interpolate("{x} {{lit}} {d[k]} {d['k'][1]} {n:.2f} {x!r}", ns)
    assert out == "a{y}b {lit} [1, 2] 2 3.14 'a{y}b'"


def test_json_and_empty_braces_are_left_alone() -> None:
    text = 'data {"a": 1, "b": [1, 2]} and {} and { spaced } and {1, 2}'
    assert interpolate(text, {}) == text


def test_unknown_names_are_named_in_the_error() -> None:
    with pytest.raises(PromptError, match=r"\{missing\}.*\{\{missing\}\}"):
        interpolate("hello {missing}", {})
    with pytest.raises(PromptError, match="cannot evaluate"):
        interpolate("{d[nokey]}", {"d": {}})


def test_tables_are_summarised_not_printed_in_full() -> None:
    text = interpolate("look at {df}", {"df": FakeFrame()})
    assert "shape (1000000, 3)" in text and "['id', 'name', 'price']" in text
    assert "item4" in text and len(text) < 400


def test_huge_values_are_bounded() -> None:
    out = describe_value("x" * 1_000_000)
    assert len(out) < 4_100 and "chars cut" in out
    assert len(interpolate("{big}", {"big": list(range(100_000))})) < 4_100
