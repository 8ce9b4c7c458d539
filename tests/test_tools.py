"""Tools from typed functions: pydantic schemas, arguments validated before the call, API names."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Literal, Optional, TypedDict

import pytest

from jupyter_agentmem.model.tools import Tool, ToolError, ToolRegistry, acall_tool, call_tool


class Row(TypedDict):
    id: int
    tags: list[str]


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Frame:
    """Not describable as JSON (like a DataFrame)."""


calls: list[dict[str, Any]] = []


def plot(
    rows: list[dict[str, Any]],
    kind: Literal["bar", "line"],
    row: Row,
    origin: Point,
    items: list[Row],
    frame: Frame,
    limit: Optional[int] = None,  # noqa: UP045 - the Optional spelling must survive too
) -> str:
    """Plot rows.

    Longer text that is not part of the description.
    """
    calls.append({"row": row, "origin": origin, "limit": limit})
    return "ok"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def test_nested_types_survive_in_the_schema() -> None:
    spec = Tool.from_function(plot).spec["function"]
    assert spec["description"] == "Plot rows."
    params = spec["parameters"]
    props = params["properties"]
    assert props["rows"] == {
        "type": "array",
        "items": {"type": "object", "additionalProperties": True},
    }
    assert props["kind"]["enum"] == ["bar", "line"]
    row = resolve(params, props["row"])
    assert row["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert row["required"] == ["id", "tags"]
    assert resolve(params, props["origin"])["required"] == ["x"]
    assert resolve(params, props["items"]["items"]) == row
    assert props["frame"] == {}  # cannot be described: any JSON value
    assert {"type": "null"} in props["limit"]["anyOf"]
    assert params["required"] == ["rows", "kind", "row", "origin", "items", "frame"]
    json.dumps(params)  # sendable as is


def test_arguments_are_validated_and_converted_before_the_call() -> None:
    tool = Tool.from_function(plot)
    good = {
        "rows": [],
        "kind": "bar",
        "row": {"id": "7", "tags": []},
        "origin": {"x": 1},
        "items": [],
        "frame": None,
    }
    calls.clear()
    assert call_tool(tool, json.dumps(good)) == call_tool(tool, json.dumps(good))
    assert calls[0] == {"row": {"id": 7, "tags": []}, "origin": Point(1.0, 0.0), "limit": None}
    bad = {**good, "kind": "pie", "origin": {}, "surprise": 1}
    calls.clear()
    outcome = call_tool(tool, json.dumps(bad))
    assert calls == []  # never called with bad arguments
    error = outcome.error or ""
    assert error.startswith("invalid arguments for plot:")
    assert "kind: Input should be 'bar' or 'line'" in error
    assert "origin.x: Field required" in error and "surprise: Extra inputs" in error
    assert asyncio.run(acall_tool(tool, json.dumps(bad))).error == error


def test_var_keyword_functions_take_extra_arguments() -> None:
    def anything(a: int, **more: Any) -> dict[str, Any]:
        return {"a": a, **more}

    assert call_tool(Tool.from_function(anything), '{"a": "1", "b": 2}').value == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    "name",
    ["é" * 120, "x" * 65, "has space", "", "dotted.name"],
)
def test_names_the_api_rejects_are_refused_at_registration(name: str) -> None:
    registry = ToolRegistry()
    with pytest.raises(ToolError, match=r"1-64 ASCII letters, digits, '_' or '-'"):
        registry.register(lambda: 1, name=name)
    assert registry.names() == []


def test_names_the_api_accepts_are_kept() -> None:
    registry = ToolRegistry()
    registry.register(lambda: 1, name="a-b_C9" + "x" * 58)
    assert registry.names() == ["a-b_C9" + "x" * 58]
