"""The common tool result in one writer attempt: short scalars around one list of rows.

Why: the limit search of ``ToolOutputTruncator._render`` makes two to four
writer attempts (~6 µs of Python each) to learn how many rows of a big list fit.
For the most common shape of a tool result, a dict of short scalars with one
list of rows decoded from JSON text (``{"query": ..., "rows": [...], "count":
95}``), the size of the output as a function of the rows shown is known in
closed form from the rows' prefix sums: the text before the list, the rows,
the ``"...(N more items)"`` marker and the text after the list. The size grows
with every row, so the search, which starts where the prefix sums say the rows
stop fitting and keeps the most rows that fit, ends on the largest count whose
size is within the budget: this module computes that count. The caller writes
that one attempt with the ordinary writer and keeps it only if its size is the
one predicted here, else it runs the search; so the output is a real writer
attempt within the budget, byte-for-byte the search's (checked by
``tests/test_truncate_direct.py`` against the search itself). Anything else
(another shape, a limit other than the row count that would bite, a first
attempt that would not stop at the prefix sums) is left to the search.
"""

from __future__ import annotations

from _json import encode_basestring as _quote
from bisect import bisect_right
from typing import Any

from .truncate_rows import Plain, Rows

__all__ = ["Shape", "rows_that_fit"]

_SCALARS = (str, int, float, bool, type(None))


def _scalar(v: object, string: int) -> int:
    """Chars the writer writes for a short scalar without cutting it or counting it as
    long text; -1 for anything else (the search handles it)."""
    t = type(v)
    if t is str and isinstance(v, str):
        return len(_quote(v)) if len(v) <= min(40, string) else -1
    if t is int and isinstance(v, int):
        return len(int.__repr__(v)) if -(10**18) < v < 10**18 else -1
    if t is float and isinstance(v, float):
        return len(float.__repr__(v)) if v - v == 0 else -1  # finite
    return 4 if v is None or v is True else 5 if v is False else -1


class Shape:
    """A dict of short scalars with exactly one list, as the writer would write it with
    every key shown: ``head`` chars up to and including the list's ``[``, ``tail`` chars
    after its ``]`` (``]`` and ``}`` included)."""

    __slots__ = ("head", "keys", "rows", "tail")

    def __init__(self, keys: int, rows: list[Any], head: int, tail: int) -> None:
        self.keys, self.rows, self.head, self.tail = keys, rows, head, tail

    @classmethod
    def of(cls, value: object, string: int) -> Shape | None:
        if type(value) is not dict:
            return None
        rows: list[Any] | None = None
        head, tail = 1, 2  # "{", and "]}"
        for i, (k, v) in enumerate(value.items()):
            if type(k) is not str or len(k) > string:
                return None
            entry = len(_quote(k)) + 1 + (1 if i else 0)  # [","]"key":
            if type(v) is list and rows is None:
                rows, head = v, head + entry + 1  # and "["
            elif (size := _scalar(v, string)) < 0:
                return None
            elif rows is None:
                head += entry + size
            else:
                tail += entry + size
        return None if rows is None else cls(len(value), rows, head, tail)

    def size(self, plan: Rows, shown: int) -> int:
        """Chars written with the first ``shown`` rows (fewer than all) and the marker."""
        more = len(self.rows) - shown
        marker = _quote(f"...({more:,} more item{'' if more == 1 else 's'})")
        return self.head + plan.ends[shown - 1] + 1 + len(marker) + self.tail


def _obey(plan: Rows, shown: int, depth: int, box: int, string: int) -> bool:
    """Are the first ``shown`` rows, in a list at depth 1, written as encoded?"""
    nest, commas, longest = plan.bounds(shown)
    return 2 + nest <= depth and commas + 1 <= box and longest <= string


def rows_that_fit(
    value: object, plain: Plain, cap: int, depth: int, items: int, keys: int, string: int
) -> tuple[int, int] | None:
    """(rows to show, size of the output) for ``value`` of the common shape, under the
    limits the search starts with (``items`` and ``keys`` scaled down together), or
    None where the search decides: not that shape, the first attempt would not stop
    at the rows' prefix sums, or some limit other than the row count would bite."""
    shape = Shape.of(value, string)
    if shape is None or depth < 2 or shape.keys > keys:
        return None
    rows, room = shape.rows, cap - shape.head
    if (plan := plain.rows.get(id(rows))) is None:
        plan = plain.rows[id(rows)] = Rows(rows, plain.fast)
    k = min(len(rows), items)
    m = min(k, plan.extend(k, room))
    # the first attempt must stop at the rows' prefix sums, as the search's does
    if not m or plan.ends[m - 1] <= room or not _obey(plan, m, depth, min(items, keys), string):
        return None
    shown = bisect_right(plan.ends, room, 0, m)
    while shown:
        lim_keys = max(1, round(keys * (shown / items)))  # as the search scales them
        if shape.keys > lim_keys or not _obey(plan, shown, depth, min(shown, lim_keys), string):
            return None
        if (size := shape.size(plan, shown)) <= cap:
            return shown, size
        shown -= 1
    return None
