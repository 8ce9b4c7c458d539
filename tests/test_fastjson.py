"""``fastjson.loads`` is ``json.loads``, with or without orjson, on every input.

Stored session documents are decoded through it (SQLite and Redis), so a value
orjson reads unlike ``json`` would silently change a restored conversation.
Each known difference has its own case; a generated JSON text covers the rest.
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

from jupyter_agentmem import fastjson
from jupyter_agentmem.stores import codec


@pytest.fixture(autouse=True)
def _orjson_on() -> Iterator[None]:
    assert fastjson.ENABLED, "orjson is installed but fastjson does not use it"
    yield
    fastjson.ENABLED = True


def same(a: Any, b: Any) -> bool:
    """Equal, with types (1 is not 1.0) and NaN equal to itself."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# What orjson reads unlike json: each must come out as json.loads reads it.
DIFFERENCES = [
    "12345678901234567890123",  # > 64 bits: orjson would give a float
    '{"n": -99999999999999999999}',
    "NaN",
    "[Infinity, -Infinity]",
    '"\\ud800 lone"',  # a lone surrogate escape
    "1e400",
    '{"a": 1, "a": 2}',  # duplicate keys: the last wins
]


@pytest.mark.parametrize("text", DIFFERENCES)
def test_known_differences_read_as_json_reads_them(text: str) -> None:
    want = json.loads(text)
    assert same(fastjson.loads(text), want)
    assert same(fastjson.loads(text.encode()), want)


def test_the_long_int_guard_is_what_keeps_big_ints_exact() -> None:
    text = '{"id": 123456789012345678901234567890}'
    assert isinstance(orjson.loads(text)["id"], float)  # why the guard exists
    assert fastjson.loads(text)["id"] == 123456789012345678901234567890


def test_the_fast_path_is_taken_for_ordinary_documents() -> None:
    text = json.dumps({"messages": [{"role": "user", "content": "hi é"}], "n": 1.5})
    assert fastjson.try_loads(text.encode()) == json.loads(text)
    fastjson.ENABLED = False
    assert fastjson.try_loads(text.encode()) is fastjson.UNSURE


@pytest.mark.parametrize("text", ["", "{", '{"a": }', "[1,]", "tru", '"\x01"'])
def test_bad_json_raises_the_same_value_error(text: str) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        fastjson.loads(text)
    assert str(got.value) == str(want.value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_any_json_text_reads_as_json_reads_it(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    want = json.loads(text)
    assert same(fastjson.loads(text), want)
    raw = text.encode("utf-8", "surrogatepass")
    assert same(fastjson.loads(raw), want)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_redis_values_round_trip_with_and_without_orjson(value: Any) -> None:
    doc = {"messages": [{"role": "tool", "content": value}], "summary": "s"}
    try:
        blob = codec.encode(doc, compress_threshold=64)
    except (TypeError, ValueError):
        return  # NaN: refused on the way in, as before
    fast, _ = codec.decode(b"3", blob)
    fastjson.ENABLED = False
    slow, revision = codec.decode(b"3", blob)
    assert same(fast, slow) and revision == 3
