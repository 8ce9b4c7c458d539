"""Rows of JSON values as compact text, each C-encoded once per truncation call.

Why: writing a list of rows node by node in Python costs ~2 µs per row per
attempt, and the truncator makes several attempts. Here each row is encoded by
the C encoder (``json``'s own), with prefix sums of the sizes and prefix maxima
of what the limits need (nesting, items, string length), so an attempt picks and
checks how many rows to write in O(1) and writes them with one ``join``.
"""

from __future__ import annotations

from _json import encode_basestring, make_encoder
from itertools import accumulate, repeat
from operator import add, gt, is_, mul, sub
from typing import Any

from .truncate_fast import dumps as fast_dumps

__all__ = ["Plain", "Rows", "encode"]


def _no_default(o: object) -> object:
    raise TypeError(type(o).__name__)


# compact, ensure_ascii=False, no NaN, no circular check (parsed JSON has no cycles)
_ENCODE = make_encoder(None, _no_default, encode_basestring, None, ":", ",", False, False, False)


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


class Rows:
    """The first items of one closed list, C-encoded once per call, with prefix sums of
    their sizes and prefix maxima of what the limits need, so that each attempt picks
    how many to write, and checks them, in O(1)."""

    __slots__ = ("ends", "fast", "items", "nest", "peak", "pieces", "string", "usable", "v")

    def __init__(self, v: list[Any], fast: bool = False) -> None:
        self.v = v  # keeps id(v) valid while cached
        self.fast = fast  # orjson decoded v, so orjson may encode its rows
        self.pieces: list[str] = []
        # prefix sums of sizes; per item its containers, commas (commas + 1 bounds the
        # items of any container inside it) and length (bounds any string inside it)
        self.ends: list[int] = []  # chars up to the end of item i, with commas
        self.nest: list[int] = []
        self.items: list[int] = []
        self.string: list[int] = []
        self.peak = (0, 0, 0)  # their maxima over all items encoded so far
        self.usable = len(v)  # items before the first one the C encoder cannot write

    def extend(self, k: int, room: int) -> int:
        """Encode items until ``k`` of them or past ``room`` chars; how many are ready.
        Batches of growing size go through C loops (``map``/``accumulate``), so a row
        costs one C encoder call and no Python bytecode."""
        pieces = self.pieces
        while len(pieces) < min(k, self.usable) and (not self.ends or self.ends[-1] <= room):
            a = len(pieces)
            texts = self._encode(self.v[a : min(k, self.usable, a + max(32, a))])
            if not texts:
                break
            lens = list(map(len, texts))
            commas = list(map(str.count, texts, repeat(",")))
            nest = list(
                map(add, map(str.count, texts, repeat("[")), map(str.count, texts, repeat("{")))
            )
            # may hold strings > 40 chars: the slow path counts them (see Writer.long)
            if any(map(gt, lens, map(mul, map(add, commas, repeat(1)), repeat(42)))):
                n = next(i for i, x in enumerate(lens) if x > 42 * (commas[i] + 1))
                self.usable = a + n
                del texts[n:], lens[n:], commas[n:], nest[n:]
                if not texts:
                    break
            last = self.ends[-1] + 1 if self.ends else 0
            self.ends += map(sub, accumulate(map(add, lens, repeat(1)), initial=last), repeat(1))
            del self.ends[a]  # accumulate's initial value
            self.nest += nest
            self.items += commas
            self.string += lens
            peak = self.peak
            self.peak = (max(peak[0], *nest), max(peak[1], *commas), max(peak[2], *lens))
            pieces += texts
        return len(pieces)

    def bounds(self, m: int) -> tuple[int, int, int]:
        """(containers, commas, length) maxima over the first ``m`` items: the maxima
        over all encoded items when those already obey (C ``max`` over a slice
        otherwise; an ``accumulate(max)`` per item cost ~8 µs per 32 rows)."""
        if m == len(self.pieces):
            return self.peak
        return max(self.nest[:m]), max(self.items[:m]), max(self.string[:m])

    def _encode(self, chunk: list[Any]) -> list[str]:
        """Compact JSON of each item; stops (and marks ``usable``) at the first item the
        C encoder cannot write as the writer would. Rows that are all dicts (the common
        case) are encoded in one call and split at ``},{``, which is exact when it
        occurs once per boundary and nowhere else."""
        try:
            if all(map(is_, map(type, chunk), repeat(dict))):
                text = (fast_dumps(chunk) if self.fast else None) or "".join(_ENCODE(chunk, 0))
                if text.count("},{") == len(chunk) - 1:
                    return ["{" + x + "}" for x in text[2:-2].split("},{")]
            return list(map("".join, map(_ENCODE, chunk, repeat(0))))
        except (TypeError, ValueError, RecursionError):
            pass
        texts: list[str] = []
        for x in chunk:
            try:
                texts.append("".join(_ENCODE(x, 0)))
            except (TypeError, ValueError, RecursionError):
                self.usable = len(self.pieces) + len(texts)
                break
        return texts


class Plain:
    """Per-call caches for values decoded from JSON text (no cycles, str keys);
    ``fast``: decoded by orjson (see ``truncate_fast``)."""

    __slots__ = ("fast", "rows", "whole")

    def __init__(self, fast: bool = False) -> None:
        self.fast = fast
        self.whole: dict[int, tuple[object, tuple[str, int, int, int] | None]] = {}
        self.rows: dict[int, Rows] = {}
