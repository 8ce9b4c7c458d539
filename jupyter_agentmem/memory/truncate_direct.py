"""The common tool result in one writer attempt: short scalars around one list of rows.

Why: the limit search of ``ToolOutputTruncator._render`` makes two to four
writer attempts (~6 µs of Python each) to learn how many rows of a big list fit.
For the most common shape of a tool result, a dict of short scalars with one
list of rows decoded from JSON text (``{"query": ..., "rows": [...], "count":
95}``), every attempt's size is known in closed form from the rows' prefix sums:
the text before the list, the rows, the ``"...(N more items)"`` marker and the
entries after the list (and where an attempt stops once past the budget). So the
search's jumps can be followed here without writing: the first attempt stops
where the prefix sums say the rows stop fitting, a failing attempt drops enough
rows to cover its excess, and one more row than the last fitting count is
refused. The caller writes only the attempt the search would end on, with the
ordinary writer, and keeps it only if its size is the one predicted here, else
it runs the search. Wherever the search would do something else (another shape,
a limit other than the row count that would bite, halving or refining instead of
jumping) this returns None; so the output is byte-for-byte the search's
(``tests/test_truncate_direct.py`` checks it against the search itself).
"""

from __future__ import annotations

from _json import encode_basestring as _quote
from bisect import bisect_right
from typing import Any

from .truncate_rows import Plain, Rows

__all__ = ["Shape", "fitted_text", "rows_that_fit"]


def _scalar(v: object, string: int) -> str | None:
    """The text the writer writes for a short scalar without cutting it or counting it
    as long text; None for anything else (the search handles it)."""
    t = type(v)
    if t is str and isinstance(v, str):
        return _quote(v) if len(v) <= min(40, string) else None
    if t is int and isinstance(v, int):
        return int.__repr__(v) if -(10**18) < v < 10**18 else None
    if t is float and isinstance(v, float):
        return float.__repr__(v) if v - v == 0 else None  # finite
    return "null" if v is None else "true" if v is True else "false" if v is False else None


class Shape:
    """A dict of short scalars with exactly one list, as the writer would write it with
    every key shown: ``head``, the text up to and including the list's ``[``, then per
    entry after the list the text of ``,"key":`` and of its value."""

    __slots__ = ("after", "head", "keys", "rows")

    def __init__(self, keys: int, rows: list[Any], head: str, after: list[tuple[str, str]]):
        self.keys, self.rows, self.head, self.after = keys, rows, head, after

    @classmethod
    def of(cls, value: object, string: int) -> Shape | None:
        if type(value) is not dict:
            return None
        rows: list[Any] | None = None
        head, after = ["{"], []
        for i, (k, v) in enumerate(value.items()):
            if type(k) is not str or len(k) > string:
                return None
            entry = f"{',' if i else ''}{_quote(k)}:"
            if type(v) is list and rows is None:
                rows = v
                head += (entry, "[")
            elif (text := _scalar(v, string)) is None:
                return None
            elif rows is None:
                head += (entry, text)
            else:
                after.append((entry, text))
        return None if rows is None else cls(len(value), rows, "".join(head), after)

    def size(self, plan: Rows, shown: int, cap: int) -> int:
        """The writer's size with the first ``shown`` rows (fewer than all) and the marker:
        all of it if within ``cap``, else where it stops (a value is refused once the
        size passed the budget), which the search's next jump depends on."""
        size = len(self.head) + plan.ends[shown - 1] + len(self.marker(shown)) + 2  # ",", "]"
        for key, value in self.after:
            size += len(key)
            if size > cap:
                return size
            size += len(value)
        return size + 1  # "}"

    def marker(self, shown: int) -> str:
        more = len(self.rows) - shown
        return _quote(f"...({more:,} more item{'' if more == 1 else 's'})")

    def write(self, plan: Rows, shown: int) -> str:
        """What the writer writes with the first ``shown`` rows: the same pieces, joined."""
        tail = "".join([key + value for key, value in self.after])
        return f"{self.head}{plan.text(shown)},{self.marker(shown)}]{tail}}}"


def _obey(plan: Rows, shown: int, depth: int, box: int, string: int) -> bool:
    """Are the first ``shown`` rows, in a list at depth 1, written as encoded? (If all
    rows encoded so far are, so are the first ``shown``: no slice to look at.)"""
    nest, commas, longest = plan.peak
    if 2 + nest <= depth and commas + 1 <= box and longest <= string:
        return True
    nest, commas, longest = plan.bounds(shown)
    return 2 + nest <= depth and commas + 1 <= box and longest <= string


def fitted_text(
    value: object,
    plain: Plain,
    cap: int,
    limits: tuple[int, int, int, int],
    jumps: int,
) -> str | None:
    """The text the search would end on for ``value`` of the common shape (see
    :func:`rows_that_fit`), written here from the pieces the sizes were counted from:
    the writer writes these same pieces (``tests/test_truncate_direct.py`` compares the
    two), so no writer attempt is needed. None where the search decides otherwise."""
    got = rows_that_fit(value, plain, cap, limits, jumps)
    if got is None:
        return None
    shape, shown, size = got
    text = shape.write(plain.rows[id(shape.rows)], shown)
    return text if len(text) == size <= cap else None


def rows_that_fit(
    value: object,
    plain: Plain,
    cap: int,
    limits: tuple[int, int, int, int],
    jumps: int,
) -> tuple[Shape, int, int] | None:
    """(its shape, rows to show, size of the output) for ``value`` of the common shape
    under the search's first ``limits`` (depth, items, keys, string), as the search
    would end with at most ``jumps`` jumps; None where the search decides otherwise
    (not that shape, some limit other than the row count would bite, or the search
    would halve or refine rather than jump)."""
    depth, items, keys, string = limits
    shape = Shape.of(value, string)
    if shape is None or depth < 2 or shape.keys > keys or max(items, keys) <= 1:
        return None
    rows, room = shape.rows, cap - len(shape.head)
    if (plan := plain.rows.get(id(rows))) is None:
        plan = plain.rows[id(rows)] = Rows(rows, plain.fast)
    k = min(len(rows), items)
    m = min(k, plan.extend(k, room))
    # the first attempt stops at the rows' prefix sums: how many fit is its hint
    if not m or plan.ends[m - 1] <= room or not _obey(plan, m, depth, min(items, keys), string):
        return None
    shown, failed = bisect_right(plan.ends, room, 0, m), set[int]()

    def valid(h: int) -> bool:  # the row count is the only limit that bites
        lim_keys = max(1, round(keys * (h / items)))  # as the search scales them
        box_min = h / items * max(items, keys) <= 1
        return (
            not box_min
            and shape.keys <= lim_keys
            and _obey(plan, h, depth, min(h, lim_keys), string)
        )

    while True:  # the search's jumps: each drops enough rows to cover the excess
        if not (shown > 0 and valid(shown)):
            return None
        if (size := shape.size(plan, shown, cap)) <= cap:
            break
        if len(failed) + 1 >= jumps:
            return None  # out of jumps: the search halves
        failed.add(shown)
        fewer = bisect_right(plan.ends, plan.ends[shown - 1] - (size - cap), 0, shown)
        if not fewer < shown:
            return None
        shown = fewer
    # the search checks one more row: refused if already failed, or if it would be
    # written as encoded and so pass the budget; else the search refines
    if shown + 1 in failed:
        return shape, shown, size
    if shown + 1 <= m and valid(shown + 1) and shape.size(plan, shown + 1, cap) > cap:
        return shape, shown, size
    return None
