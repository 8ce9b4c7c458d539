"""Tests for ToolOutputTruncator: the budget, JSON validity and bounded work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import threading
import time
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.memory.truncate import ToolOutputTruncator, TruncationResult

BUDGETS = [64, 100, 500, 2000]


def strict_loads(text: str) -> Any:
    """json.loads that rejects NaN/Infinity, i.e. strict JSON."""

    def reject(name: str) -> Any:
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=reject)


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def rows_doc(n: int = 95) -> dict[str, Any]:
    """The case the naive truncator gets wrong: many ~110-char rows plus a count."""
    rows = [
        {
            "id": i,
            "name": f"Customer {i:04d}",
            "email": f"customer{i:04d}@example.com",
            "city": "Springfield",
            "active": True,
            "balance": 1234.5,
        }
        for i in range(n)
    ]
    return {"rows": rows, "count": n}


# --- 1. constructor and the budget -------------------------------------------------------


def test_constructor_rejects_small_budget_with_clear_message() -> None:
    with pytest.raises(ValueError, match=r"max_chars must be an int >= 64"):
        ToolOutputTruncator(max_chars=63)


@pytest.mark.parametrize(
    "name", ["max_depth", "max_items", "max_keys", "max_string", "parse_limit"]
)
@pytest.mark.parametrize("bad", [0, -5])
def test_constructor_rejects_limits_below_one(name: str, bad: int) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be an int >= 1, got {bad}"):
        ToolOutputTruncator(**{name: bad})


def test_constructor_accepts_minimums_and_default_string_limit() -> None:
    t = ToolOutputTruncator(
        max_chars=64, max_depth=1, max_items=1, max_keys=1, max_string=1, parse_limit=1
    )
    out = t.truncate({"a": ["x" * 500, 2], "b": 3})
    assert len(out) <= 64
    strict_loads(out)
    assert ToolOutputTruncator().max_string is None


@pytest.mark.parametrize("max_chars", BUDGETS)
@pytest.mark.parametrize(
    "output",
    [
        json.dumps(rows_doc()),
        json.dumps({f"k{i}": "v" * 10_000 for i in range(20)}),
        "plain text line\n" * 5000,
        b"\xff\xfe garbage \x80" * 3000,
        rows_doc(),
        {"nested": [[[["x" * 3000]]]] * 40},
        "{" + "x" * 9000,
        "\ud83d\ude00" * 3000,
    ],
)
def test_result_never_exceeds_budget(max_chars: int, output: object) -> None:
    result = ToolOutputTruncator(max_chars=max_chars).truncate_ex(output)
    assert isinstance(result, TruncationResult)
    assert len(result.text) <= max_chars
    if result.is_json:
        strict_loads(result.text)


# --- 2. input that fits is returned unchanged --------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        json.dumps({"a": [1, 2, 3]}, indent=4),
        "  [1, 2,   3]  ",
        "{broken json",
        "x" * 2000,
    ],
)
def test_text_that_fits_is_unchanged(text: str) -> None:
    t = ToolOutputTruncator(max_chars=2000)
    result = t.truncate_ex(text)
    assert result.text == text
    assert not result.truncated
    assert result.saved_chars == 0


def test_is_json_flag_for_fitting_text() -> None:
    t = ToolOutputTruncator()
    assert t.truncate_ex('{"a": 1}').is_json
    assert t.truncate_ex("[" * 3000 + "]" * 3000).text.startswith("[[[")  # deep, too long
    assert ToolOutputTruncator(max_chars=10_000).truncate_ex("[" * 3000 + "]" * 3000).is_json
    assert not t.truncate_ex("{oops").is_json
    assert not t.truncate_ex("hello").is_json


def test_small_bytes_are_decoded_and_unchanged() -> None:
    result = ToolOutputTruncator().truncate_ex("héllo wörld".encode())
    assert result.text == "héllo wörld"
    assert result.original_chars == len("héllo wörld".encode())


# --- 3. JSON in, valid JSON out, markers inside --------------------------------------------


def test_list_cut_keeps_first_items_and_ends_with_count_marker() -> None:
    data = list(range(1000))
    out = ToolOutputTruncator(max_chars=500, max_items=20).truncate(json.dumps(data))
    loaded = strict_loads(out)
    assert loaded[:20] == list(range(20))
    assert loaded[-1] == "...(980 more items)"


def test_dict_cut_keeps_first_keys_in_order_plus_marker_entry() -> None:
    data = {f"key{i:03d}": i for i in range(300)}
    out = ToolOutputTruncator(max_chars=2000, max_keys=10).truncate(json.dumps(data, indent=2))
    loaded = strict_loads(out)
    assert list(loaded)[:10] == [f"key{i:03d}" for i in range(10)]
    assert loaded["..."] == "290 more keys"
    assert list(loaded)[-1] == "..."


def test_long_string_keeps_head_and_tail_inside_the_string() -> None:
    text = "A" * 3000 + "M" * 4000 + "Z" * 3000
    out = ToolOutputTruncator(max_chars=300).truncate(json.dumps({"log": text}))
    value = strict_loads(out)["log"]
    head, _, rest = value.partition("...(")
    count, _, tail = rest.partition(" chars cut)...")
    assert head and set(head) == {"A"} and tail and set(tail) == {"Z"}
    assert int(count.replace(",", "")) == len(text) - len(head) - len(tail)
    assert len(head) > len(tail)  # ~60 / 40


def test_too_deep_containers_keep_their_type() -> None:
    deep = {"a": {"b": {"c": {"k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5}}}}
    deep_list = {"a": {"b": {"c": list(range(12))}}}
    t = ToolOutputTruncator(max_chars=2000, max_depth=3)
    text = "x" * 3000  # padding so that the input does not fit as is
    got = strict_loads(t.truncate(json.dumps({"pad": text, **deep})))
    assert got["a"]["b"]["c"] == {"...": "5 keys (depth limit)"}
    got = strict_loads(t.truncate(json.dumps({"pad": text, **deep_list})))
    assert got["a"]["b"]["c"] == ["...(12 items, depth limit)"]


def test_rows_case_keeps_as_many_rows_as_fit_and_the_count() -> None:
    doc = rows_doc()
    row_len = len(json.dumps(doc["rows"][0], separators=(",", ":")))
    assert 100 <= row_len <= 125
    out = ToolOutputTruncator(max_chars=2000).truncate(json.dumps(doc, indent=2))
    assert len(out) <= 2000
    got = strict_loads(out)
    kept = got["rows"][:-1]
    assert 10 <= len(kept) <= 16
    assert kept == doc["rows"][: len(kept)]
    assert got["rows"][-1] == f"...({95 - len(kept)} more items)"
    assert got["count"] == 95


def test_output_is_compact_and_keeps_non_ascii_characters() -> None:
    data = {"städte": ["Zürich", "東京", "😀"] * 100}
    out = ToolOutputTruncator(max_chars=300).truncate(json.dumps(data))
    assert "Zürich" in out and "東京" in out and "😀" in out
    assert "\\u" not in out
    assert ", " not in out and '": ' not in out


def test_budget_wins_over_configured_limits() -> None:
    data = [{"text": "y" * 500} for _ in range(50)]
    out = ToolOutputTruncator(max_chars=600, max_items=50, max_string=10_000).truncate(data)
    assert len(out) <= 600
    loaded = strict_loads(out)
    assert isinstance(loaded, list) and loaded[-1].startswith("...(")


def test_unfittable_json_becomes_a_marker_string() -> None:
    digits = "1" * 3_000_000  # one number, longer than parse_limit: nothing can be kept
    out = ToolOutputTruncator(max_chars=64).truncate(digits)
    assert strict_loads(out) == "...(JSON of 3,000,000 chars truncated)"


def test_json_scalars_and_whitespace_are_handled() -> None:
    t = ToolOutputTruncator(max_chars=100)
    assert strict_loads(t.truncate(json.dumps("s" * 1000))).startswith("sss")
    assert strict_loads(t.truncate("\n  " * 100 + "[1, 2, 3]" + " " * 100)) == [1, 2, 3]
    assert strict_loads(t.truncate(json.dumps([math.nan, math.inf] * 100)))[:2] == [
        "NaN",
        "Infinity",
    ]


# --- 4. bounded parsing of huge inputs -------------------------------------------------------


def huge_json_array(target_chars: int) -> str:
    row = '{"id":12345,"name":"abcdef","values":[1,2,3],"ok":true},'
    return "[" + row * (target_chars // len(row)) + '{"id":0}]'


def test_100mb_json_str_is_fast_and_valid() -> None:
    big = huge_json_array(100_000_000)
    t = ToolOutputTruncator(max_chars=2000)
    start = time.perf_counter()
    result = t.truncate_ex(big)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert len(result.text) <= 2000
    loaded = strict_loads(result.text)
    assert loaded[0] == {"id": 12345, "name": "abcdef", "values": [1, 2, 3], "ok": True}
    # the parser stops after max_chars / 2 values (more can never be shown), here
    # ~1,000 rows into the 128,000-char window, and says where
    at = loaded[-1].partition("input cut at ")[2].partition(" of ")[0]
    assert 50_000 < int(at.replace(",", "")) <= 128_000
    assert loaded[-1].endswith(f" of {len(big):,} chars)")
    assert result.original_chars == len(big) and result.truncated and result.is_json


def test_100mb_json_bytes_is_fast_and_valid() -> None:
    big = huge_json_array(100_000_000).encode()
    start = time.perf_counter()
    result = ToolOutputTruncator(max_chars=2000).truncate_ex(big)
    assert time.perf_counter() - start < 1.0
    assert len(result.text) <= 2000
    assert strict_loads(result.text)[-1].endswith(f"of {len(big):,} bytes)")
    assert result.original_chars == len(big)


def test_100mb_plain_text_and_bytes_are_fast() -> None:
    line = "2024-01-01 12:00:00 INFO something happened é\n"
    text = line * (100_000_000 // len(line))
    for output in (text, text.encode()):
        start = time.perf_counter()
        result = ToolOutputTruncator(max_chars=2000).truncate_ex(output)
        assert time.perf_counter() - start < 1.0
        assert len(result.text) <= 2000 and not result.is_json
        assert result.text.startswith("2024-01-01") and result.text.endswith("happened é\n")


def test_json_loads_never_sees_more_than_parse_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_loads = json.loads

    def spy(text: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(len(text))
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spy)  # the module calls json.loads through ``json``
    t = ToolOutputTruncator(max_chars=500, parse_limit=100_000)
    strict = real_loads(t.truncate(huge_json_array(1_000_000)))
    assert isinstance(strict, list)
    assert all(n <= 100_000 for n in seen)


def test_prefix_parser_closes_open_containers_and_cuts_strings() -> None:
    t = ToolOutputTruncator(max_chars=400, parse_limit=1000)
    text = json.dumps({"a": [1, 2, 3], "b": "x" * 5000})
    got = strict_loads(t.truncate(text))
    assert got["a"] == [1, 2, 3]
    assert got["b"].startswith("xxx") and got["b"].endswith(
        f"...(input cut at 1,000 of {len(text):,} chars)"
    )
    assert got["..."] == f"more keys; input cut at 1,000 of {len(text):,} chars"

    nested = json.dumps({"outer": {"inner": list(range(5000))}})
    got = strict_loads(ToolOutputTruncator(max_chars=300, parse_limit=1000).truncate(nested))
    inner = got["outer"]["inner"]
    assert inner[:5] == [0, 1, 2, 3, 4] and inner[-1].endswith("; input cut)")
    # 166 values (max_chars / 2 + 16) are all 300 chars could ever show: reading stops there
    assert got["..."] == f"more keys; input cut at 726 of {len(nested):,} chars"
    assert nested[:726].endswith(", 162, ")  # the 167th value (163) is not read


@pytest.mark.parametrize("cut_at", range(990, 1010))
def test_prefix_parser_stops_cleanly_anywhere(cut_at: int) -> None:
    """Wherever the window ends (inside numbers, escapes, literals, keys) the output is
    valid JSON."""
    item = {"n": -12.5e3, "s": 'q"\\\u00e9\n', "t": True, "f": False, "z": None, "k": [1]}
    text = json.dumps([item] * 200)
    t = ToolOutputTruncator(max_chars=300, parse_limit=cut_at)
    result = t.truncate_ex(text)
    assert result.is_json
    assert len(result.text) <= 300
    strict_loads(result.text)


def test_huge_invalid_json_falls_back_to_text() -> None:
    broken = "{" + "not json at all " * 200_000
    result = ToolOutputTruncator(max_chars=500, parse_limit=10_000).truncate_ex(broken)
    assert not result.is_json and "chars truncated]" in result.text
    truncated_json = huge_json_array(200_000)[:-5]  # valid prefix, broken end
    result = ToolOutputTruncator(max_chars=500, parse_limit=10_000).truncate_ex(truncated_json)
    assert not result.is_json


def test_deeply_nested_json_text_does_not_recurse() -> None:
    text = "[" * 200_000 + "]" * 200_000
    start = time.perf_counter()
    result = ToolOutputTruncator(max_chars=500).truncate_ex(text)
    assert time.perf_counter() - start < 1.0
    assert result.is_json and len(result.text) <= 500
    strict_loads(result.text)


# --- 5. plain text ----------------------------------------------------------------------------


def test_plain_text_keeps_head_and_tail_with_marker() -> None:
    text = "H" * 10_000 + "T" * 10_000
    out = ToolOutputTruncator(max_chars=1000).truncate(text)
    assert len(out) <= 1000
    head, _, rest = out.partition("\n...[")
    count, _, tail = rest.partition(" chars truncated]...\n")
    assert set(head) == {"H"} and set(tail) == {"T"}
    assert int(count.replace(",", "")) == len(text) - len(head) - len(tail)
    assert 0.55 <= len(head) / (len(head) + len(tail)) <= 0.65


def test_invalid_json_is_cut_as_text() -> None:
    broken = '{"a": [1, 2, 3' + ", 4" * 5000
    result = ToolOutputTruncator(max_chars=300).truncate_ex(broken)
    assert not result.is_json and result.text.startswith('{"a": [1, 2, 3')
    assert "chars truncated]" in result.text


@pytest.mark.parametrize("max_chars", [64, 101, 333, 2000])
def test_text_cut_never_splits_a_surrogate_pair(max_chars: int) -> None:
    for pad in range(4):
        text = "x" * pad + "\ud83d\ude00" * 5000  # pairs as two code points
        out = ToolOutputTruncator(max_chars=max_chars).truncate(text)
        assert len(out) <= max_chars
        for i, ch in enumerate(out):
            if "\ud800" <= ch <= "\udbff":
                assert i + 1 < len(out) and "\udc00" <= out[i + 1] <= "\udfff"
            if "\udc00" <= ch <= "\udfff":
                assert i > 0 and "\ud800" <= out[i - 1] <= "\udbff"


class SpyBytes(bytes):
    decoded: ClassVar[list[int]] = []

    def decode(self, *args: Any, **kwargs: Any) -> str:
        SpyBytes.decoded.append(len(self))
        return super().decode(*args, **kwargs)


def test_huge_bytes_are_never_decoded_in_full() -> None:
    SpyBytes.decoded = []
    for blob in (b"log line\n" * 1_000_000, huge_json_array(10_000_000).encode()):
        out = ToolOutputTruncator(max_chars=500, parse_limit=100_000).truncate(SpyBytes(blob))
        assert len(out) <= 500
    assert SpyBytes.decoded == []  # only (plain bytes) slices were decoded


def test_bytes_garbage_is_decoded_boundedly() -> None:
    blob = bytes(range(256)) * 20_000
    result = ToolOutputTruncator(max_chars=200).truncate_ex(blob)
    assert len(result.text) <= 200 and not has_lone_surrogate(result.text)
    assert result.original_chars == len(blob)


# --- 6. Python objects ------------------------------------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str


class HugeRepr:
    calls = 0

    def __repr__(self) -> str:
        HugeRepr.calls += 1
        return "<" + "r" * 5_000_000 + ">"


class Counted:
    calls = 0

    def __repr__(self) -> str:
        Counted.calls += 1
        return "Counted()"


def test_python_scalars_and_containers_become_strict_json() -> None:
    t = ToolOutputTruncator(max_chars=2000)
    data = {
        "none": None,
        "t": True,
        "f": False,
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "tuple": (1, 2),
        "set": {3},
        "frozen": frozenset({4}),
        "bytes": b"caf\xc3\xa9 \xff",
        1: "int key",
        (1, 2): "tuple key",
        None: "none key",
        "point": Point(1, 2.5, "p"),
        "when": dt.datetime(2024, 5, 6, 7, 8, 9),
        "day": dt.date(2024, 5, 6),
        "obj": Counted(),
    }
    result = t.truncate_ex(data)
    got = strict_loads(result.text)
    assert got["none"] is None and got["t"] is True and got["f"] is False
    assert (got["nan"], got["inf"], got["ninf"]) == ("NaN", "Infinity", "-Infinity")
    assert got["tuple"] == [1, 2] and got["set"] == [3] and got["frozen"] == [4]
    assert got["bytes"] == "café \ufffd"
    assert got["1"] == "int key" and got["(1, 2)"] == "tuple key" and got["None"] == "none key"
    assert got["point"] == {"x": 1, "y": 2.5, "label": "p"}
    assert got["when"] == "2024-05-06T07:08:09" and got["day"] == "2024-05-06"
    assert got["obj"] == "Counted()"
    assert not result.truncated and result.original_chars == len(result.text)


def test_numpy_values() -> None:
    np = pytest.importorskip("numpy")
    t = ToolOutputTruncator(max_chars=500)
    got = strict_loads(
        t.truncate(
            {
                "i": np.int64(7),
                "f": np.float32(0.5),
                "b": np.bool_(True),
                "small": np.arange(4),
                "big": np.zeros(10**6),
            }
        )
    )
    assert got["i"] == 7 and got["f"] == 0.5 and got["b"] is True
    assert got["small"] == [0, 1, 2, 3]
    assert isinstance(got["big"], str) and got["big"].startswith("array(")


def test_huge_repr_is_bounded_and_called_once() -> None:
    HugeRepr.calls = 0
    out = ToolOutputTruncator(max_chars=300).truncate([HugeRepr(), {"x": HugeRepr()}])
    assert len(out) <= 300
    got = strict_loads(out)
    assert got[0].startswith("<rrr") and "chars cut)..." in got[0] and got[0].endswith("r>")
    assert HugeRepr.calls == 2  # once per kept object, however many attempts


def test_repr_only_called_on_kept_objects() -> None:
    Counted.calls = 0
    out = ToolOutputTruncator(max_chars=2000, max_items=10).truncate(
        [Counted()] * 0 + [Counted() for _ in range(10_000)]
    )
    assert strict_loads(out)[-1] == "...(9,990 more items)"
    assert Counted.calls == 10


def test_each_attempt_stops_at_the_budget() -> None:
    """Over-budget attempts abort early: with 50 allowed items but room for a few,
    only the first few objects are ever visited (and repr'd)."""
    Counted.calls = 0
    out = ToolOutputTruncator(max_chars=64, max_items=50).truncate([Counted() for _ in range(50)])
    assert len(out) <= 64 and strict_loads(out)[0] == "Counted()"
    assert Counted.calls <= 8


def test_cycles_become_markers() -> None:
    a: dict[str, Any] = {"name": "a"}
    b: list[Any] = [a]
    a["b"] = b
    a["self"] = a
    got = strict_loads(ToolOutputTruncator().truncate(a))
    assert got == {"name": "a", "b": ["...(cycle)"], "self": "...(cycle)"}


def test_10000_deep_nesting_has_no_recursion_error() -> None:
    deep: Any = "bottom"
    for _ in range(10_000):
        deep = {"d": [deep]}
    result = ToolOutputTruncator(max_chars=500, max_depth=8).truncate_ex(deep)
    got = strict_loads(result.text)
    for _ in range(4):
        got = got["d"][0]
    assert got == {"...": "1 key (depth limit)"}
    assert result.truncated
    # max_depth far above the recursion limit is capped, not obeyed blindly
    out = ToolOutputTruncator(max_chars=100_000, max_depth=50_000).truncate(deep)
    strict_loads(out)


def test_huge_python_objects_are_walked_boundedly() -> None:
    big = {"rows": [{"id": i, "payload": "p" * 100} for i in range(200_000)]}
    start = time.perf_counter()
    result = ToolOutputTruncator(max_chars=2000).truncate_ex(big)
    assert time.perf_counter() - start < 0.5
    assert len(result.text) <= 2000 and result.truncated
    strict_loads(result.text)
    assert result.original_chars > 10_000_000  # estimate: ~200k rows of ~120 chars


def test_huge_ints_do_not_hit_the_digit_limit() -> None:
    out = ToolOutputTruncator(max_chars=200).truncate({"n": 10**10_000, "m": 2**64})
    got = strict_loads(out)
    assert got["n"].startswith("...(int of ~10,001 digits") and got["m"] == 2**64


# --- 7. accounting ----------------------------------------------------------------------------


def test_original_chars_and_bytes_saved_accumulate() -> None:
    t = ToolOutputTruncator(max_chars=100)
    r1 = t.truncate_ex("x" * 1000)
    r2 = t.truncate_ex(b"\xc3\xa9" * 1000)
    r3 = t.truncate_ex("short")
    assert (r1.original_chars, r2.original_chars, r3.original_chars) == (1000, 2000, 5)
    assert r1.saved_chars == 1000 - len(r1.text) and r3.saved_chars == 0
    assert t.bytes_saved == r1.saved_chars + r2.saved_chars
    assert isinstance(t.bytes_saved, int)
    assert (t.calls, t.truncations) == (3, 2)


def test_saved_chars_is_never_negative() -> None:
    r = TruncationResult(text="abcdef", original_chars=3, truncated=False, is_json=False)
    assert r.saved_chars == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.text = "x"  # type: ignore[misc]


def test_compacting_alone_is_not_truncation() -> None:
    pretty = json.dumps({"a": list(range(30))}, indent=4)
    result = ToolOutputTruncator(max_chars=200).truncate_ex(pretty)
    assert len(pretty) > 200 and strict_loads(result.text) == {"a": list(range(30))}
    assert not result.truncated and result.saved_chars == len(pretty) - len(result.text)


# --- 8. thread safety -------------------------------------------------------------------------


def test_counters_are_thread_safe() -> None:
    t = ToolOutputTruncator(max_chars=100)
    results: list[TruncationResult] = []
    lock = threading.Lock()

    def work() -> None:
        for i in range(200):
            r = t.truncate_ex("y" * (150 + i))
            with lock:
                results.append(r)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.calls == t.truncations == 1600
    assert t.bytes_saved == sum(r.saved_chars for r in results)


# --- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=60,
)


@settings(max_examples=200, deadline=None)
@given(
    value=json_values,
    max_chars=st.sampled_from(BUDGETS),
    indent=st.sampled_from([None, 1]),
    ascii_only=st.booleans(),
)
def test_property_json_in_valid_json_out(
    value: Any, max_chars: int, indent: int | None, ascii_only: bool
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    result = ToolOutputTruncator(max_chars=max_chars).truncate_ex(text)
    assert len(result.text) <= max_chars
    if len(text) <= max_chars:
        assert result.text == text
    else:
        assert result.is_json
    strict_loads(result.text)


@settings(max_examples=200, deadline=None)
@given(value=json_values, max_chars=st.sampled_from(BUDGETS))
def test_property_python_objects(value: Any, max_chars: int) -> None:
    value = [value]  # a top-level str is a text, not an object
    result = ToolOutputTruncator(max_chars=max_chars).truncate_ex(value)
    assert len(result.text) <= max_chars
    got = strict_loads(result.text)
    if not result.truncated:
        assert got == value


@settings(max_examples=200, deadline=None)
@given(text=st.text(), max_chars=st.sampled_from(BUDGETS))
def test_property_any_text(text: str, max_chars: int) -> None:
    out = ToolOutputTruncator(max_chars=max_chars).truncate(text * 50)
    assert isinstance(out, str) and len(out) <= max_chars
    if len(text) * 50 <= max_chars:
        assert out == text * 50


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(), max_chars=st.sampled_from(BUDGETS), repeat=st.sampled_from([1, 80]))
def test_property_any_bytes(blob: bytes, max_chars: int, repeat: int) -> None:
    out = ToolOutputTruncator(max_chars=max_chars, parse_limit=1000).truncate(blob * repeat)
    assert isinstance(out, str) and len(out) <= max_chars


# --- the naive truncator's flaws, as regressions ----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(json_scalars | st.lists(json_scalars, max_size=5), min_size=6, max_size=60),
    max_chars=st.sampled_from(BUDGETS),
)
def test_regression_list_cut_is_never_followed_by_non_json_text(
    items: list[Any], max_chars: int
) -> None:
    out = ToolOutputTruncator(max_chars=max_chars, max_items=5).truncate(json.dumps(items))
    got = strict_loads(out)
    assert out.rstrip().endswith(("]", '"'))
    assert isinstance(got, (list, str))


def test_regression_ten_megabyte_values_stay_within_budget() -> None:
    data = {f"key{i}": "v" * 1_000_000 for i in range(10)}
    text = json.dumps(data)
    for output in (data, text):  # the text is parsed in full: parse_limit is above it
        t = ToolOutputTruncator(max_chars=2000, max_keys=10, parse_limit=20_000_000)
        out = t.truncate(output)
        assert len(out) <= 2000
        got = strict_loads(out)
        assert list(got) == [f"key{i}" for i in range(10)]  # every key, a preview of each
        assert all(v.startswith("vvv") and "chars cut)..." in v for v in got.values())
    # with the default parse_limit only a bounded prefix is read: still within budget
    out = ToolOutputTruncator(max_chars=2000, max_keys=10).truncate(text)
    got = strict_loads(out)
    assert len(out) <= 2000
    assert got["key0"].endswith(f"(input cut at 128,000 of {len(text):,} chars)")


def test_regression_deep_subtree_keeps_container_type() -> None:
    data = {"level1": {"level2": {"level3": [[1, 2], {"x": 1}]}}, "pad": "p" * 5000}
    got = strict_loads(ToolOutputTruncator(max_chars=500, max_depth=4).truncate(data))
    assert isinstance(got["level1"]["level2"]["level3"], list)
    assert got["level1"]["level2"]["level3"] == [
        ["...(2 items, depth limit)"],
        {"...": "1 key (depth limit)"},
    ]


class Hostile(dict):  # type: ignore[type-arg]
    """A mapping whose iteration fails half-way, like a broken user container."""

    def items(self) -> Any:
        yield ("ok", 1)
        raise RuntimeError("boom")

    def __repr__(self) -> str:
        return "Hostile(...)"


class BadLen(list):  # type: ignore[type-arg]
    def __len__(self) -> int:
        raise RuntimeError("no len")


def test_user_objects_that_raise_do_not_break_truncation() -> None:
    t = ToolOutputTruncator(max_chars=200)
    got = strict_loads(t.truncate({"a": Hostile(x=1), "b": [BadLen([1, 2])], "c": "x" * 500}))
    assert got["a"] == "Hostile(...)"
    assert got["b"] == ["[1, 2]"]
    assert got["c"].startswith("xxx")
