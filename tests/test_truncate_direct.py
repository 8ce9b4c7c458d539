"""The closed-form row count for the common tool result (``truncate_direct``) writes
exactly what the limit search writes, and is really taken on the workload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.memory import truncate_direct
from jupyter_agentmem.memory.truncate import ToolOutputTruncator
from jupyter_agentmem.memory.truncate_direct import rows_that_fit
from jupyter_agentmem.memory.truncate_rows import Plain
from jupyter_agentmem.memory.truncate_write import Limits, OverBudget, Writer

from .workload import tool_result


def searched(t: ToolOutputTruncator, text: str) -> str:
    """What the limit search alone writes."""
    t._direct = False
    try:
        return t.truncate(text)
    finally:
        t._direct = True


def test_workload_results_take_the_closed_form_and_match_the_search() -> None:
    t = ToolOutputTruncator()
    for turn in range(16):
        text = tool_result(turn, turn % 4)
        doc = json.loads(text)
        got = rows_that_fit(doc, Plain(), 2000, Limits(8, 50, 50, 2000), 4)
        assert got is not None, "the common shape fell back to the search"
        out = t.truncate(text)
        assert out == searched(t, text)
        assert len(json.loads(out)["rows"]) == got[1] + 1  # the rows and the marker
        assert len(out) == got[2] <= 2000


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=45)
)
rows = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 10**6), "name": st.text(max_size=20)})
    | st.lists(st.integers(0, 9), max_size=8)
    | scalars,
    min_size=1,
    max_size=150,
)


# rows of which one more may still fit once the limits cut it
cut_rows = st.lists(
    st.lists(st.integers(100, 999), min_size=5, max_size=45) | st.text("ab", max_size=25),
    min_size=2,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    before=st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    items=rows | cut_rows,
    after=st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    max_chars=st.sampled_from([64, 150, 300, 2000]),
    box=st.sampled_from([3, 10, 50]),
    depth=st.sampled_from([2, 3, 8]),
)
def test_property_closed_form_writes_what_the_search_writes(
    before: dict[str, Any],
    items: list[Any],
    after: dict[str, Any],
    max_chars: int,
    box: int,
    depth: int,
) -> None:
    doc = {**before, "\x00rows": items, **{f"~{k}": v for k, v in after.items()}}
    text = json.dumps(doc, indent=1)
    t = ToolOutputTruncator(max_chars=max_chars, max_items=box, max_keys=box, max_depth=depth)
    out = t.truncate_ex(text)
    assert len(out.text) <= max_chars and out.is_json
    json.loads(out.text)
    if len(text) > max_chars:
        assert out.text == searched(t, text)


def test_the_closed_form_keeps_the_most_rows_that_fit() -> None:
    """One more row under the same limits would pass the budget (walked node by node)."""
    text = tool_result(3, 1)
    doc = json.loads(text)
    _, shown, _ = rows_that_fit(doc, Plain(), 2000, Limits(8, 50, 50, 2000), 4) or (0, 0, 0)
    writer = Writer(2000, Limits(8, shown + 1, shown + 1, 2000), "", frozenset(), {}, 2000)
    with pytest.raises(OverBudget):
        writer.value(doc, 0)  # a writer without the fast paths: the walk


def test_a_wrong_prediction_falls_back_to_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """The text written from the pieces is kept only at the predicted size: a
    prediction that is off (here one row too few, at the size of the right count)
    leaves the answer to the search."""
    text = tool_result(5, 2)
    t = ToolOutputTruncator()
    expected = searched(t, text)
    fit = truncate_direct.rows_that_fit

    def off_by_one(*args: Any) -> tuple[Any, int, int] | None:
        got = fit(*args)
        assert got is not None and got[1] > 1
        return got[0], got[1] - 1, got[2]

    monkeypatch.setattr(truncate_direct, "rows_that_fit", off_by_one)
    assert t.truncate(text) == expected
    monkeypatch.setattr(truncate_direct, "rows_that_fit", fit)
    assert t.truncate(text) == expected


def test_a_row_that_fits_only_cut_leaves_the_answer_to_the_search() -> None:
    """One more row than the prefix sums allow may still fit when the limits cut it
    (here 40 ints cut to 9 at 9 items): the search keeps it, and so must we."""
    rows: list[Any] = ["a" * 20] * 8 + [list(range(100, 140))] + ["b"] * 5
    text = json.dumps({"query": "q", "rows": rows, "count": len(rows)})
    t = ToolOutputTruncator(max_chars=300)
    out = t.truncate(text)
    assert out == searched(t, text)
    assert json.loads(out)["rows"][8][-1] == "...(31 more items)"


@settings(max_examples=300, deadline=None)
@given(
    items=rows | cut_rows,
    max_chars=st.sampled_from([64, 300, 2000]),
    box=st.sampled_from([3, 50]),
)
def test_property_a_refused_jump_check_is_one_that_would_fail(
    items: list[Any], max_chars: int, box: int
) -> None:
    """``Writer.refuses`` skips the search's "one more row?" attempt only where writing
    it would fail: the search writes the same with every such attempt written out."""
    text = json.dumps({"q": "x", "rows": items, "n": len(items)})
    t = ToolOutputTruncator(max_chars=max_chars, max_items=box, max_keys=box)
    skipped = searched(t, text)
    assert t.truncate(text) == skipped  # and the closed form follows the search there too
    original = Writer.refuses
    Writer.refuses = lambda self, lim: False  # type: ignore[method-assign]
    try:
        assert searched(t, text) == skipped
    finally:
        Writer.refuses = original  # type: ignore[method-assign]
