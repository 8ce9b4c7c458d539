"""Serialising a value as compact JSON under fixed limits, stopping at the budget.

Why a module of its own: this is the truncator's hot path. One attempt writes
at most ~``cap`` characters whatever the input size. Values read from JSON text
(``plain``) take a fast path: a closed container whose C-encoded text provably
obeys the attempt's limits is written in one piece, and its encoding is kept
for the next attempts, so a list of rows costs one C call per row per
truncation rather than a Python walk per row per attempt.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from _json import encode_basestring as _quote  # json's C quoting; keeps non-ASCII as is
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from itertools import islice
from typing import Any, Final, NamedTuple

from .truncate_edges import bytes_head, bytes_tail, clip_head, clip_tail
from .truncate_json import BigInt, CutStr
from .truncate_rows import Plain, Rows, encode

__all__ = [
    "Clips",
    "Limits",
    "OverBudget",
    "Plain",
    "Writer",
    "estimate",
    "quote",
]

quote = _quote
_MISSING: Final = object()
_ARRAY_TOLIST_MAX = 1024  # numpy-like arrays up to this many elements become lists
Clips = dict[tuple[int, bool], tuple[object, str, int]]


class OverBudget(Exception):
    """Aborts a serialisation attempt once its output passed the budget."""


class Limits(NamedTuple):
    """One attempt's limits (a tuple: built and hashed in C, several per call)."""

    depth: int
    items: int
    keys: int
    string: int


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _array_items(v: object) -> object:
    """A small numpy-like array or scalar as plain Python (``tolist``), else ``_MISSING``:
    big arrays keep their ``repr``, which numpy already summarises cheaply."""
    try:
        shape, tolist = getattr(v, "shape", None), getattr(v, "tolist", None)
        if (
            isinstance(shape, tuple)
            and callable(tolist)
            and all(type(d) is int for d in shape)
            and math.prod(shape) <= _ARRAY_TOLIST_MAX
        ):
            out = tolist()
            if out is None or isinstance(out, (list, str, int, float, complex)):
                return out
    except Exception:
        pass
    return _MISSING


class Writer:
    """One serialisation attempt under fixed limits.

    Why it is cheap: every visited node writes at least one char and the budget
    is checked before each value, so an attempt visits O(cap) nodes whatever the
    input size. ``clips`` (clipped repr/str results) is shared by the attempts
    of one call, so ``repr`` runs at most once per object that is kept.
    """

    __slots__ = (
        "cap", "clip_len", "clips", "cut", "fits", "hint", "last", "lim", "long", "note",
        "open_ids", "parts", "path", "plain", "size",
    )  # fmt: skip

    def __init__(
        self,
        cap: int,
        lim: Limits,
        note: str,
        open_ids: frozenset[int],
        clips: Clips,
        clip_len: int,
        plain: Plain | None = None,
    ) -> None:
        self.cap, self.lim, self.note, self.open_ids = cap, lim, note, open_ids
        self.clips, self.clip_len, self.plain = clips, clip_len, plain
        self.parts: list[str] = []
        self.size = 0
        self.cut = False  # set when any content was dropped
        self.fits = False  # set when the attempt finished within the budget
        self.long = 0  # chars written for strings longer than 40 chars
        self.path: list[int] = []  # ids of the containers being written, to spot cycles
        self.hint = 0  # rows that fit where the budget ran out in a list (0: unknown)
        # the last rows written in one piece: rows, how many, room and depth of the list,
        # and whether anything was cut before it (see refuses)
        self.last: tuple[Rows, int, int, int, bool] | None = None

    def put(self, s: str) -> None:
        self.size += len(s)
        self.parts.append(s)

    def obeys(self, depth: int, nest: int, items: int, string: int) -> bool:
        """Would C-encoded text with these bounds come out the same under the limits?"""
        lim = self.lim
        return (
            depth + nest <= lim.depth and items <= min(lim.items, lim.keys) and string <= lim.string
        )

    def whole(self, v: list[Any] | dict[str, Any], depth: int) -> bool:
        """Write a closed container of plain JSON values in one piece, if its C-encoded
        text provably obeys the limits: as many containers inside as nesting levels at
        most, commas + 1 >= items of any container inside, length >= any string."""
        plain, lim = self.plain, self.lim
        if (
            plain is None
            or not depth
            or len(v) > min(lim.items, lim.keys)
            or id(v) in self.open_ids
        ):
            return False  # the root is seldom small: encoding it first would be wasted
        if (hit := plain.whole.get(id(v))) is None:
            hit = plain.whole[id(v)] = (v, encode(v, plain.fast))
        got = hit[1]
        if got is None or not self.obeys(depth, *got[1:]):
            return False
        self.size += len(got[0])
        self.parts.append(got[0])
        return True

    def rows(self, v: list[Any], depth: int) -> int:
        """Write the first items of a closed list of plain JSON values from their cached
        C encodings in one piece; how many (0: the slow path writes them)."""
        plain, k = self.plain, min(len(v), self.lim.items)
        if plain is None or k < 2 or id(v) in self.open_ids:
            return 0
        if (plan := plain.rows.get(id(v))) is None:
            plan = plain.rows[id(v)] = Rows(v, plain.fast)
        room = self.cap - self.size
        m = min(k, plan.extend(k, room))
        if not m:
            return 0
        nest, commas, string = plan.peak
        if not self.obeys(depth + 1, nest, commas + 1, string):  # all obey: so do m
            nest, commas, string = plan.bounds(m)
            if not self.obeys(depth + 1, nest, commas + 1, string):
                return 0
        if plan.ends[m - 1] > room:  # the slow path would pass the budget within these
            self.hint = bisect_right(plan.ends, room, 0, m)  # rows that would still fit
            raise OverBudget
        if m < k:
            return 0
        self.last = (plan, m, room, depth, self.cut)
        self.size += plan.ends[m - 1]
        self.parts.append(plan.text(m))
        return m

    def rows_to_try(self) -> int:
        """After a failed attempt: how many rows of the list it cut (or wrote in one piece)
        the prefix sums say would fit, for the next attempt to jump to (0: no idea).
        A guess only: the caller still checks the next attempt against the budget."""
        if self.hint or self.last is None:
            return self.hint
        plan, m = self.last[:2]  # rows fitted, what followed them did not: drop >= the excess
        return bisect_right(plan.ends, plan.ends[m - 1] - (self.size - self.cap), 0, m)

    def refuses(self, lim: Limits) -> bool:
        """After an attempt that fitted: would one under ``lim`` (one more row of the
        list written last, other limits no lower) surely not fit? Saves that attempt.

        Why it is exact: nothing was cut before that list, so no limit shaped what
        precedes it, and ``lim`` writes the same text up to it, with the same room left.
        There, one more row than fitted is ready and obeys ``lim``, so the list (in one
        piece, row by row or whole) is written as encoded, and those rows pass the room.
        """
        if self.last is None:
            return False
        plan, m, room, depth, cut = self.last
        old = self.lim
        if (
            cut
            or m != old.items
            or lim.items != m + 1
            or lim.keys < old.keys
            or (lim.depth, lim.string) != (old.depth, old.string)
            or len(plan.ends) <= m
            or plan.ends[m] <= room
        ):
            return False
        nest, commas, string = plan.bounds(m + 1)
        return (
            depth + 1 + nest <= lim.depth
            and commas + 1 <= min(lim.items, lim.keys)
            and string <= lim.string
        )

    def marker(self, text: str) -> None:
        self.cut = True
        self.put(_quote(text))

    def value(self, v: object, depth: int) -> None:
        if self.size > self.cap:
            raise OverBudget
        if type(v) is str and len(v) <= self.lim.string:  # common case of string()
            text = _quote(v)
            self.size += len(text)
            self.parts.append(text)
            if len(v) > 40:
                self.long += len(text)
        elif isinstance(v, str):
            self.string(v, len(v))
        elif v is None or v is True or v is False:
            self.put("null" if v is None else "true" if v else "false")
        elif isinstance(v, int):
            digits = int(v.bit_length() * 0.30103) + 1  # 4000: CPython's int->str limit
            if digits <= min(max(20, self.lim.string), 4000):
                self.put(int.__repr__(v))
            else:
                self.marker(f"...(int of ~{digits:,} digits)")
        elif isinstance(v, float):
            if math.isfinite(v):
                self.put(float.__repr__(v))
            else:  # strict JSON has no NaN/Infinity: they become strings
                self.put('"NaN"' if v != v else '"Infinity"' if v > 0 else '"-Infinity"')
        elif type(v) is dict:
            if not self.whole(v, depth):
                self.container(v, len(v), v.items(), depth, True)
        elif type(v) is list:
            if not self.whole(v, depth):
                self.container(v, len(v), v, depth, False)
        elif type(v) is BigInt:
            self.marker(f"...(int of ~{v.digits:,} digits)")
        elif type(v) is tuple:
            self.container(v, len(v), v, depth, False)
        elif isinstance(v, (bytes, bytearray)):
            self.blob(v)
        else:
            self.other(v, depth)

    def string(self, text: str, total: int, unit: str = "chars") -> None:
        """Write a JSON string: ``text`` is the whole string, or a head+tail clip of one
        ``total`` long whose parts are each at least as long as the string limit."""
        room, start = self.lim.string, self.size
        if type(text) is CutStr:
            mark = f"...({self.note})"
            self.marker(clip_head(text, room - len(mark)) + mark)
        elif total <= room:
            self.put(_quote(text))
        else:
            approx = "~" if unit == "bytes" else ""
            keep = max(0, room - len(f"...({approx}{total:,} {unit} cut)..."))
            head, tail = clip_head(text, keep - keep * 2 // 5), clip_tail(text, keep * 2 // 5)
            cut = total - len(head) - len(tail)
            self.marker(f"{head}...({approx}{cut:,} {unit} cut)...{tail}")
        if total > 40:
            self.long += self.size - start

    def blob(self, b: bytes | bytearray) -> None:
        """Bytes become text; only bounded slices of a big blob are decoded."""
        k = self.lim.string
        if len(b) <= 8 * k + 64:
            text = b.decode("utf-8", "replace")
            self.string(text, len(text))
        else:  # 4k bytes decode to at least k chars: enough for any head or tail
            self.string(bytes_head(b, 4 * k) + bytes_tail(b, 4 * k), len(b), "bytes")

    def container(
        self, obj: object, n: int, items: Iterable[Any], depth: int, is_dict: bool
    ) -> None:
        """A dict (``items`` are pairs) or a list; too deep ones keep their type."""
        noun = "key" if is_dict else "item"
        if id(obj) in self.path:
            return self.marker("...(cycle)")
        if depth >= self.lim.depth and n:
            self.cut = True
            deep = _plural(n, noun)
            return self.put(
                '{"...":' + _quote(f"{deep} (depth limit)") + "}"
                if is_dict
                else "[" + _quote(f"...({deep}, depth limit)") + "]"
            )
        self.path.append(id(obj))
        self.size += 1
        self.parts.append("{" if is_dict else "[")
        shown, room = 0, self.lim.string
        if type(obj) is list and (shown := self.rows(obj, depth)):
            items = ()
        for entry in islice(items, self.lim.keys if is_dict else self.lim.items):
            sep = "," if shown else ""
            if not is_dict:
                self.put(sep)
                self.value(entry, depth + 1)
            elif isinstance(k := entry[0], str) and len(k) <= room:  # common case: one piece
                key = f"{sep}{_quote(k)}:"
                self.size += len(key)
                self.parts.append(key)
                self.value(entry[1], depth + 1)
            else:
                self.put(sep)
                self.string(*((k, len(k)) if isinstance(k, str) else self.clip(k, str)))
                self.put(":")
                self.value(entry[1], depth + 1)
            shown += 1
        note = "" if id(obj) not in self.open_ids else self.note if depth == 0 else "input cut"
        if shown < n or note:
            more = _plural(n - shown, f"more {noun}") if n > shown else f"more {noun}s"
            more += f"; {note}" if note else ""
            self.put(("," if shown else "") + ('"...":' if is_dict else ""))
            self.marker(more if is_dict else f"...({more})")
        self.put("}" if is_dict else "]")
        self.path.pop()

    def other(self, v: object, depth: int) -> None:
        """Other mappings and collections, dataclasses (as dicts), dates (ISO text),
        small arrays, else a clipped repr. User code that raises gets the repr too:
        truncating a tool output must not fail."""
        parts, size, path, cut = len(self.parts), self.size, len(self.path), self.cut
        try:
            if isinstance(v, Mapping):
                self.container(v, len(v), v.items(), depth, True)
            elif isinstance(v, (Set, Sequence)):
                self.container(v, len(v), v, depth, False)
            elif dataclasses.is_dataclass(v) and not isinstance(v, type):
                fields = dataclasses.fields(v)
                pairs = [(f.name, getattr(v, f.name)) for f in fields]
                self.container(v, len(fields), pairs, depth, True)
            elif isinstance(v, (_dt.date, _dt.time)):
                text = v.isoformat()
                self.string(text, len(text))
            elif (plain := _array_items(v)) is not _MISSING:
                self.value(plain, depth + 1)
            else:
                self.string(*self.clip(v, repr))
        except (OverBudget, RecursionError):
            raise
        except Exception:
            del self.parts[parts:], self.path[path:]
            self.size, self.cut = size, cut
            self.string(*self.clip(v, repr))

    def clip(self, obj: object, how: Callable[[object], str]) -> tuple[str, int]:
        """``how(obj)``, computed once per call and kept clipped (bounded memory);
        the entry holds ``obj`` so that its id cannot be reused while cached."""
        key = (id(obj), how is str)
        hit = self.clips.get(key)
        if hit is None:
            try:
                text = how(obj)
            except Exception:
                text = f"<unrepresentable {type(obj).__name__}>"
            k = self.clip_len
            hit = (obj, text if len(text) <= 2 * k else text[:k] + text[-k:], len(text))
            self.clips[key] = hit
        return hit[1], hit[2]


def estimate(obj: object, depth: int, budget: list[int]) -> int:
    """Approximate compact-JSON length of ``obj`` from a sampled, bounded walk:
    containers are measured on their first 8 children and scaled by their length,
    at most ``budget[0]`` nodes are visited and ``repr`` is never called (other
    leaves count 16). Good enough for a "chars saved" figure."""
    budget[0] -= 1
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj) + 2
    if isinstance(obj, int):
        return int(obj.bit_length() * 0.30103) + 1
    if budget[0] <= 0 or depth > 32 or not isinstance(obj, (Mapping, list, tuple, Set, Sequence)):
        return 16
    values = obj.values() if isinstance(obj, Mapping) else obj
    sample = [8 + estimate(v, depth + 1, budget) for v in islice(values, 8)]
    return 2 + (sum(sample) * len(obj) // len(sample) if sample else 0)
