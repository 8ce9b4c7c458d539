"""The optional orjson path of the truncator writes exactly what the stdlib path writes.

Both paths run in every test (``truncate_fast.ENABLED`` switched off for the
stdlib one), on the benchmark's tool results and on generated JSON texts that
hold what orjson reads or writes unlike ``json``: NaN / Infinity, ints beyond
64 bits, floats needing an exponent, lone surrogates, control characters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson  # in the `dev` and `fast` extras: a missing accelerator fails, not skips
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.memory import truncate_fast
from jupyter_agentmem.memory.truncate import ToolOutputTruncator, TruncationResult
from jupyter_agentmem.memory.truncate_rows import _ENCODE

from .workload import tool_result


def both(t: ToolOutputTruncator, value: object) -> tuple[TruncationResult, TruncationResult]:
    """(orjson path, stdlib path) of one truncation."""
    fast = t.truncate_ex(value)
    truncate_fast.ENABLED = False
    try:
        return fast, t.truncate_ex(value)
    finally:
        truncate_fast.ENABLED = True


@pytest.fixture(autouse=True)
def _orjson_on() -> Iterator[None]:
    assert truncate_fast.ENABLED, "orjson is installed but the truncator does not use it"
    yield
    truncate_fast.ENABLED = True


@pytest.mark.parametrize("max_chars", [64, 300, 2000, 8000])
def test_workload_results_are_identical_with_and_without_orjson(max_chars: int) -> None:
    t = ToolOutputTruncator(max_chars=max_chars)
    for turn in range(16):
        text = tool_result(turn, turn % 4)
        fast, stdlib = both(t, text)
        assert fast == stdlib
        assert len(fast.text) <= max_chars and fast.is_json


def test_orjson_really_reads_the_workload() -> None:
    """Guards the speed-up itself: the common tool result is not left to the stdlib."""
    text = tool_result(1, 0)
    assert truncate_fast.loads(text) == json.loads(text)
    rows = json.loads(text)["rows"][:30]
    assert truncate_fast.dumps(rows) == "".join(_ENCODE(rows, 0))


def typed(v: Any) -> Any:
    """A value with every float and int told apart (1 != 1.0, -0.0 != 0.0)."""
    if isinstance(v, float):
        return ("f", repr(v))
    if isinstance(v, dict):
        return ("d", [(k, typed(x)) for k, x in v.items()])
    if isinstance(v, list):
        return ("l", [typed(x) for x in v])
    return (type(v).__name__, v)


floats = st.floats() | st.sampled_from(
    [1e-5, 1.5e-7, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308]
)
ints = st.integers() | st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**30])
texts = st.text(max_size=12) | st.sampled_from(["\ud800", "a\udfffb", "\x00\x1f\x7f", "\u2028é😀"])
leaves = st.none() | st.booleans() | ints | floats | texts
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(texts, inner, max_size=6),
    max_leaves=120,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 1]), ascii=st.booleans())
def test_property_orjson_reads_what_json_reads(value: Any, indent: int | None, ascii: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii)
    got = truncate_fast.loads(text)
    if got is not truncate_fast.UNSURE:
        assert typed(got) == typed(json.loads(text))
        again = truncate_fast.dumps(got)  # orjson writes only what it read
        assert again is None or again == "".join(_ENCODE(got, 0))


@settings(max_examples=300, deadline=None)
@given(
    value=json_values,
    indent=st.sampled_from([None, 1]),
    max_chars=st.sampled_from([64, 300, 2000]),
    box=st.sampled_from([3, 50]),
)
def test_property_truncation_is_identical_with_and_without_orjson(
    value: Any, indent: int | None, max_chars: int, box: int
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    t = ToolOutputTruncator(max_chars=max_chars, max_items=box, max_keys=box)
    fast, stdlib = both(t, text)
    assert fast == stdlib
    assert len(fast.text) <= max_chars
    if fast.is_json:
        json.loads(fast.text, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))


@pytest.mark.parametrize(
    "text",
    [
        "[NaN, 1]",
        '{"big": 18446744073709551616}',
        "[-9223372036854775809]",
        "[1e400]",
        '["\\ud800"]',
        '{"x": 1e-05, "y": 1.5e-07, "z": 1e+16}',
        "[" + ",".join(["1.5e-07"] * 400) + "]",
    ],
)
def test_inputs_orjson_reads_differently_come_out_as_with_json(text: str) -> None:
    """Each of these would differ if orjson's reading or writing were taken as is: as
    rows of a document longer than the budget (text that fits comes back verbatim)."""
    doc = '{"query": "q", "rows": [' + ",".join([text] * 120) + '], "count": 120}'
    for max_chars in (64, 300, 2000):
        fast, stdlib = both(ToolOutputTruncator(max_chars=max_chars), doc)
        assert fast == stdlib
        assert len(fast.text) <= max_chars


def test_ints_beyond_64_bits_are_not_read_as_floats() -> None:
    assert truncate_fast.loads("[18446744073709551616]") is truncate_fast.UNSURE
    assert orjson.loads("[18446744073709551616]") == [float(2**64)]  # why the check exists
    assert not math.isnan(truncate_fast.loads("[1.5]")[0])


def test_positive_exponents_go_to_orjson_negative_ones_to_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson 3.10+ writes 1e16 and up like repr (``1e+16``): no digit scan for those,
    only for a negative exponent (``1e-7`` against ``1e-07``) or an older orjson."""
    rows = [{"a": 1e16, "b": -2.5e300}, {"a": 1.5e22, "b": 0.5}]
    assert truncate_fast._REPR_EXPONENT
    assert truncate_fast.dumps(rows) == "".join(_ENCODE(rows, 0))
    assert truncate_fast.dumps([{"a": 1.5e-7}]) is None
    monkeypatch.setattr(truncate_fast, "_REPR_EXPONENT", False)
    assert truncate_fast.dumps(rows) is None


@pytest.mark.parametrize("where", ["head", "row 2", "row 20", "row 90", "after"])
@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30])
def test_an_int_beyond_64_bits_is_written_as_json_reads_it(where: str, big: int) -> None:
    """orjson reads such an int as a float; the common shape skips the 19-digit check
    unless a value it looked at has an exponent: wherever the int is (written, only
    sized, or never looked at), the output is the stdlib's. A long key after the rows
    moves the budget's edge across rows 19-22, so that some length leaves room for
    row 20 as json writes it but not as orjson does (the case where the float is in
    no output, only in the rows encoded to size it), or the other way round."""
    t = ToolOutputTruncator()
    for pad in range(540, 760, 1 if where == "row 20" else 20):
        doc = json.loads(tool_result(3, 1))
        doc["k" * pad] = 0
        if where.startswith("row"):
            doc["rows"][int(where[4:])]["id"] = big
        elif where == "head":
            doc = {"big": big, **doc}
        else:
            doc["big"] = big
        fast, stdlib = both(t, json.dumps(doc))
        assert fast == stdlib, pad
        assert len(fast.text) <= 2000 and fast.is_json
