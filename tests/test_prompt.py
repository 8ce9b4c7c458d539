"""{name} interpolation: once, safely, with bounded values."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.model.prompt import (
    PromptError,
    describe_value,
    interpolate,
    interpolate_prompt,
    unknown_notice,
)


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


# -- braces that are not references arrive byte for byte (issue 10, issue 16) --------------------

BYTE_FOR_BYTE = [
    'Nested JSON: [{"a": {"b": 1}}]',
    "{'outer': {'inner': x}}",
    "What does {k: v for k, v in d.items()} do?",
    'print(f"{name!r:>10} {value}")',
    "{x for x in range(3)} and {1, 2} and {{ jinja }} and {% if a %}",
    r"\frac{{a}}{b} \mathbb{R}^{n} x_{i}",
    '{"greeting": "{name}"}',
    '{"template": "{{name}} and {{ name }}"}',
    '{"template": "Dear {customer.name}, see {items[0]}"}',
    "```python\nreturn {row}\n```",
    "[{unknown}, {other}]",
    "}} stray {{ and }",
]


@pytest.mark.parametrize("text", BYTE_FOR_BYTE)
def test_braces_that_are_not_variables_arrive_unchanged(text: str) -> None:
    assert interpolate(text, {}) == text


def test_comprehension_is_left_alone_even_when_its_names_exist() -> None:
    text = "What does {k: v for k, v in d.items()} do?"
    assert interpolate(text, {"k": 1, "v": 2, "d": {}}) == text


def test_existing_variables_are_replaced_inside_json_too() -> None:
    out = interpolate('{"city": "{city}", "rows": [{n}]}', {"city": "Lyon", "n": 3})
    assert out == '{"city": "Lyon", "rows": [3]}'


def test_doubled_braces_escape_a_reference() -> None:
    assert interpolate("{{city}} is {city}", {"city": "Lyon"}) == "{city} is Lyon"
    # doubled braces around anything that is not an escaped reference stay as written
    assert interpolate('{"a": {"b": {{c}}}}', {}) == '{"a": {"b": {{c}}}}'


def test_unknown_names_in_data_are_reported_not_raised() -> None:
    result = interpolate_prompt('{"greeting": "{name}"} and [{who}]', {})
    assert result.text == '{"greeting": "{name}"} and [{who}]'
    assert result.unknown == ("{name}", "{who}")


def test_values_with_braces_are_not_expanded_again() -> None:
    ns = {"a": "{b}", "b": "B", "j": '[{"x": {"y": 1}}]'}
    assert interpolate("{a} {j}", ns) == '{b} [{"x": {"y": 1}}]'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 2]), st.booleans())
def test_any_json_document_arrives_unchanged(doc: Any, indent: int | None, ascii_: bool) -> None:
    prompt = f"Explain this data:\n{json.dumps(doc, indent=indent, ensure_ascii=ascii_)}\nThanks."
    assert interpolate(prompt, {"unrelated": 1}) == prompt


def test_a_typo_in_prose_is_still_caught() -> None:
    with pytest.raises(PromptError, match=r"\{dff\}"):
        interpolate("What's in {dff}? Don't guess.", {"df": 1})
    assert unknown_notice(("{a}", "{b}")) == "not notebook variables, sent as written: {a}, {b}"
    assert unknown_notice(()) is None
