"""Hostile inputs for ToolOutputTruncator (issue 16): strictness, odd numbers, a BOM,
and pathological shapes whose *work* must stay bounded, not only their output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.memory.truncate import ToolOutputTruncator


def strict_loads(text: str) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=reject)


# --- a JSON claim is strict JSON, even when the input already fits -------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, NaN]", [1, "NaN"]),
        ('{"a": Infinity, "b": -Infinity}', {"a": "Infinity", "b": "-Infinity"}),
        ("NaN", "NaN"),
    ],
)
def test_non_strict_json_that_fits_comes_back_strict(text: str, expected: Any) -> None:
    result = ToolOutputTruncator().truncate_ex(text)
    assert result.is_json
    assert strict_loads(result.text) == expected
    assert not result.truncated  # nothing dropped: the constants are kept as strings


def test_strict_json_that_fits_is_still_verbatim() -> None:
    text = '{"a": [1, 2.5, "x"],  "b": null}'
    assert ToolOutputTruncator().truncate_ex(text).text == text


# --- numbers beyond CPython's int <-> str limit ----------------------------------------------


@pytest.mark.parametrize("max_chars", [200, 20_000])
def test_json_with_a_huge_int_is_json_with_a_marker(max_chars: int) -> None:
    text = '{"n": 1' + "0" * 5000 + ', "m": 7}'
    result = ToolOutputTruncator(max_chars=max_chars).truncate_ex(text)
    assert result.is_json and len(result.text) <= max_chars
    got = json.loads(result.text)  # Python's json can read it back (no 5,001-digit int)
    assert got["n"].startswith("...(int of ~5,001 digits") and got["m"] == 7
    assert result.truncated


def test_huge_int_in_a_huge_input_is_json() -> None:
    text = "[" + "1" + "0" * 5000 + "," + "2," * 200_000 + "3]"
    result = ToolOutputTruncator(max_chars=300, parse_limit=10_000).truncate_ex(text)
    assert result.is_json
    got = strict_loads(result.text)
    assert got[0].startswith("...(int of ~5,001 digits") and got[1] == 2


# --- a byte-order mark means the same for str and bytes ---------------------------------------


@pytest.mark.parametrize("body", ['{"a": 1}', json.dumps({"k": "v" * 5000})])
def test_bom_is_ignored_for_str_like_for_bytes(body: str) -> None:
    t = ToolOutputTruncator()
    from_str = t.truncate_ex("\ufeff" + body)
    from_bytes = t.truncate_ex(b"\xef\xbb\xbf" + body.encode())
    assert from_str.is_json and from_bytes.is_json
    assert from_str.text == from_bytes.text
    strict_loads(from_str.text)


def test_bom_before_plain_text_is_dropped_too() -> None:
    t = ToolOutputTruncator()
    assert t.truncate_ex("\ufeffhello").text == t.truncate_ex(b"\xef\xbb\xbfhello").text == "hello"


# --- pathological shapes: the parser stops early, whatever the window -------------------------


def cut_position(text: str) -> int:
    """Where the output says the input was cut (``input cut at N of``)."""
    _, _, rest = text.partition("input cut at ")
    return int(rest.split(" of ", 1)[0].replace(",", ""))


@pytest.mark.parametrize(
    "make",
    [
        lambda: "[" + "1," * 5_000_000 + "1]",  # 10 MB of tiny items
        lambda: "[" + "[]," * 1_000_000 + "[]]",  # 3 MB of empty lists
        lambda: "[" + "[1]," * 1_000_000 + "[1]]",  # 4 MB of tiny lists
        lambda: "[" * 5_000_000 + "]" * 5_000_000,  # 10 MB of nesting
        lambda: "[" + ("[" * 900 + "]" * 900 + ",") * 1200 + "[]]",  # 900-deep lists, ~2 MB
    ],
)
def test_pathological_json_is_read_only_as_far_as_it_can_show(make: Any) -> None:
    text = make()
    t = ToolOutputTruncator(max_chars=2000)
    result = t.truncate_ex(text)
    assert result.is_json and len(result.text) <= 2000
    strict_loads(result.text)
    # nothing past ~ a few budgets' worth of values is read: at most 2,000 values can be
    # shown, so a parser that reads 128,000 chars of 1-char values does needless work
    assert cut_position(result.text) <= 16 * 2000, result.text[-200:]


# --- the fast path for rows: same guarantees, whatever the rows hold ----------------------

rows_text = st.text(alphabet=st.sampled_from(list('ab},{[]":\\\u00e9 ')), max_size=12)
row_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | rows_text
)
rows = st.lists(
    st.dictionaries(rows_text, row_values | st.lists(row_values, max_size=4), max_size=6)
    | st.lists(row_values, max_size=4)
    | row_values,
    min_size=2,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    items=rows,
    max_chars=st.sampled_from([64, 300, 2000]),
    wrap=st.booleans(),
    depth=st.integers(1, 4),
    box=st.sampled_from([2, 5, 50]),
)
def test_property_rows_fast_path_writes_what_the_walk_writes(
    items: list[Any], max_chars: int, wrap: bool, depth: int, box: int
) -> None:
    """JSON text takes the fast path (rows C-encoded once, picked by prefix sums); the
    same value as Python objects is walked node by node. Strings here are short (no
    "long text" heuristics), so both must write exactly the same JSON."""
    doc: Any = {"rows": items, "count": len(items)} if wrap else items
    text = json.dumps(doc, indent=1)
    t = ToolOutputTruncator(max_chars=max_chars, max_depth=depth, max_items=box, max_keys=box)
    t._jumps = 0  # the walk has no prefix sums to jump by: compare the same search
    fast, walked = t.truncate_ex(text), t.truncate_ex(doc)
    assert fast.is_json and len(fast.text) <= max_chars
    strict_loads(fast.text)
    if len(text) > max_chars:
        assert fast.text == walked.text
        assert fast.truncated == walked.truncated


AT_THE_LIMITS = [
    [[1, 2, 3]] * 40,
    [{"a": [1, 2, 3], "b": {"c": [4, [5]]}}] * 40,
    [{"s": "x" * n, "t": "y" * (n // 2)} for n in range(1, 40)] * 2,
    [{"k" * n: n} for n in range(1, 40)] * 2,
    ["z" * n for n in range(1, 40)] * 2,
]


@pytest.mark.parametrize("doc", AT_THE_LIMITS)
@pytest.mark.parametrize("box", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("string", [3, 10, 25])
def test_fast_path_agrees_with_the_walk_at_every_limit(
    doc: list[Any], box: int, depth: int, string: int
) -> None:
    """Rows exactly at, just under and just over each limit (items, depth, string)."""
    t = ToolOutputTruncator(
        max_chars=300, max_depth=depth, max_items=box, max_keys=box, max_string=string
    )
    text = json.dumps(doc)
    assert len(text) > 300  # limits shape only what does not fit as is
    assert t.truncate(text) == t.truncate(doc)


def test_rows_jump_keeps_the_most_rows_that_fit() -> None:
    """The limit search jumps to the rows the prefix sums allow: one more row would pass
    the budget, and no fewer rows are kept than by the plain halving search."""
    from .workload import tool_result

    jumping, halving = ToolOutputTruncator(), ToolOutputTruncator()
    halving._jumps = 0
    for turn in range(16):
        text = tool_result(turn, turn % 4)
        got = jumping.truncate(text)
        rows, old = json.loads(got)["rows"], json.loads(halving.truncate(text))["rows"]
        assert len(rows) >= len(old)
        shown = len(rows) - 1  # the last item is the "...(N more items)" marker
        more = json.dumps(json.loads(text)["rows"][shown], separators=(",", ":"))
        assert len(got) + len(more) + 1 > 2000
