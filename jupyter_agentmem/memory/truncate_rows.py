"""Rows of JSON values as compact text, each C-encoded once per truncation call.

Why: writing a list of rows node by node in Python costs ~2 µs per row per
attempt, and the truncator makes several attempts. Here the rows are encoded by
the C encoder (``json``'s own, or orjson's), kept as one text with the end of
each row (prefix sums of the sizes) and what the limits need per row (nesting,
items, string length), so an attempt picks and checks how many rows to write in
O(1) and writes them as one slice of that text.
"""

from __future__ import annotations

from _json import encode_basestring, make_encoder
from itertools import accumulate, repeat
from operator import add, gt, mul
from typing import Any

from .truncate_fast import dumps as fast_dumps

__all__ = ["Plain", "Rows", "encode"]


def _no_default(o: object) -> object:
    raise TypeError(type(o).__name__)


# compact, ensure_ascii=False, no NaN, no circular check (parsed JSON has no cycles)
_ENCODE = make_encoder(None, _no_default, encode_basestring, None, ":", ",", False, False, False)
# bytes.translate deletes all but these: the structure of a row, as far as limits go
_NOT_SHAPE = bytes(c for c in range(256) if c not in b",[{}")
# lengths, containers, commas per row; then the most containers, most and fewest commas
_Batch = tuple[list[int], list[int], list[int], int, int, int]
_DICTS = frozenset([dict])


def encode(v: object, fast: bool = False) -> tuple[str, int, int, int] | None:
    """``v`` as compact JSON with what the limits need to know of it: (text, containers
    inside, items bound, string bound), or None if only the slow path writes it as the
    writer would (a BigInt, a str subclass, something the C encoder refuses).
    ``fast``: orjson decoded ``v``, so orjson may encode it."""
    try:
        text = (fast_dumps(v) if fast else None) or "".join(_ENCODE(v, 0))
    except (TypeError, ValueError, RecursionError):
        return None
    nest, commas = text.count("[") + text.count("{"), text.count(",")
    if len(text) > 42 * (commas + 1):  # may hold strings > 40 chars: the slow path counts them
        return None
    return text, nest, commas + 1 if nest else 0, len(text)


def _dict_rows(text: str, n: int) -> _Batch | None:
    """Per-row stats of ``text``, the encoding of ``n >= 1`` dicts, split at ``},{``
    (exact when it occurs once per boundary and nowhere else), or None. Rows of one
    shape (the common case: same keys, same nesting) are counted once: the shape of
    each row is the text with all but ``,[{}`` deleted, one C pass for all rows."""
    inner = text[2:-2].split("},{")
    if len(inner) != n:
        return None
    lens = list(map(add, map(len, inner), repeat(2)))
    shapes = text.encode("utf-8", "surrogatepass").translate(None, _NOT_SHAPE)[2:-1].split(b"},{")
    if len(shapes) == n and shapes.count(first := shapes[0]) == n:  # same boundaries
        nest, commas = first.count(b"[") + first.count(b"{") + 1, first.count(b",")
        return lens, [nest] * n, [commas] * n, nest, commas, commas
    return _stats(lens, inner, 1)


def _stats(lens: list[int], texts: list[str], braces: int = 0) -> _Batch:
    """Per-row stats, counted row by row (``braces``: each row lost its own ``{}``)."""
    commas = list(map(str.count, texts, repeat(",")))
    nest = list(map(add, map(str.count, texts, repeat("[")), map(str.count, texts, repeat("{"))))
    if braces:
        nest = list(map(add, nest, repeat(braces)))
    return lens, nest, commas, max(nest), max(commas), min(commas)


class Rows:
    """The first items of one closed list, C-encoded once per call as one text (rows
    joined by ``,``) with the end of each row and per-row maxima of what the limits
    need, so that each attempt picks how many to write, and checks them, in O(1)."""

    __slots__ = ("body", "ends", "fast", "items", "nest", "peak", "string", "usable", "v")

    def __init__(self, v: list[Any], fast: bool = False) -> None:
        self.v = v  # keeps id(v) valid while cached
        self.fast = fast  # orjson decoded v, so orjson may encode its rows
        self.body = ""  # the encoded items joined by ","
        # per item: where it ends in body (so the size of the first i+1 items, with
        # commas); its containers, commas (commas + 1 bounds the items of any container
        # inside it) and length (bounds any string inside it)
        self.ends: list[int] = []
        self.nest: list[int] = []
        self.items: list[int] = []
        self.string: list[int] = []
        self.peak = (0, 0, 0)  # their maxima over all items encoded so far
        self.usable = len(v)  # items before the first one the C encoder cannot write

    def text(self, m: int) -> str:
        """The first ``m`` items, joined by commas."""
        return self.body[: self.ends[m - 1]]

    def extend(self, k: int, room: int) -> int:
        """Encode items until ``k`` of them or past ``room`` chars; how many are ready.
        Batches of growing size go through C loops (one encoder call per batch, or
        per row), so a row costs no Python bytecode."""
        ends = self.ends
        while len(ends) < min(k, self.usable) and (not ends or ends[-1] <= room):
            a = len(ends)
            got = self._encode(self.v[a : min(k, self.usable, a + max(32, a))])
            if got is None:
                break
            body, (lens, nest, commas, most, widest, fewest) = got
            longest = max(lens)
            # may hold strings > 40 chars: the slow path counts them (see Writer.long)
            if longest > 42 * (fewest + 1) and any(
                map(gt, lens, map(mul, map(add, commas, repeat(1)), repeat(42)))
            ):
                n = next(i for i, x in enumerate(lens) if x > 42 * (commas[i] + 1))
                self.usable = a + n
                if not n:
                    break
                del lens[n:], nest[n:], commas[n:]
                longest, most, widest = max(lens), max(nest), max(commas)
            last = ends[-1] if ends else -1
            start = len(ends)
            ends += accumulate(map(add, lens, repeat(1)), initial=last)
            del ends[start]  # accumulate's initial value
            self.body = (self.body + "," if self.body else "") + body[: ends[-1] - last - 1]
            self.nest += nest
            self.items += commas
            self.string += lens
            peak = self.peak
            self.peak = (max(peak[0], most), max(peak[1], widest), max(peak[2], longest))
        return len(ends)

    def bounds(self, m: int) -> tuple[int, int, int]:
        """(containers, commas, length) maxima over the first ``m`` items: the maxima
        over all encoded items when those already obey (C ``max`` over a slice
        otherwise; an ``accumulate(max)`` per item cost ~8 µs per 32 rows)."""
        if m == len(self.ends):
            return self.peak
        return max(self.nest[:m]), max(self.items[:m]), max(self.string[:m])

    def _encode(self, chunk: list[Any]) -> tuple[str, _Batch] | None:
        """Compact JSON of the items, joined by commas, with per-item stats; stops (and
        marks ``usable``) at the first item the C encoder cannot write as the writer
        would. Rows that are all dicts (the common case) are encoded in one call."""
        try:
            if set(map(type, chunk)) == _DICTS:
                text = (fast_dumps(chunk) if self.fast else None) or "".join(_ENCODE(chunk, 0))
                if (stats := _dict_rows(text, len(chunk))) is not None:
                    return text[1:-1], stats
            texts = list(map("".join, map(_ENCODE, chunk, repeat(0))))
            return ",".join(texts), _stats(list(map(len, texts)), texts)
        except (TypeError, ValueError, RecursionError):
            pass
        texts = []
        for x in chunk:
            try:
                texts.append("".join(_ENCODE(x, 0)))
            except (TypeError, ValueError, RecursionError):
                self.usable = len(self.ends) + len(texts)
                break
        return (",".join(texts), _stats(list(map(len, texts)), texts)) if texts else None


class Plain:
    """Per-call caches for values decoded from JSON text (no cycles, str keys);
    ``fast``: decoded by orjson (see ``truncate_fast``)."""

    __slots__ = ("fast", "rows", "whole")

    def __init__(self, fast: bool = False) -> None:
        self.fast = fast
        self.whole: dict[int, tuple[object, tuple[str, int, int, int] | None]] = {}
        self.rows: dict[int, Rows] = {}
