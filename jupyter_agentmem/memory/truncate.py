"""Budget-safe, JSON-preserving truncation of tool outputs.

Why: a tool result is pasted into the next LLM request and then kept in the
conversation, so one oversized result costs memory and tokens on every later
turn. The naive truncator (cut lists to 5 items and dicts to 10 keys, append
text) breaks JSON and still busts its budget. This one guarantees that

* the result is never longer than ``max_chars`` characters (Python ``len``);
* ``is_json`` means strict JSON (no NaN / Infinity; ints Python's ``json`` can
  read back), with the ``...`` markers *inside* the JSON; JSON in gives JSON out;
* work per call is bounded by the budget, not the input: a text longer than
  ``64 * max_chars`` is never parsed, decoded or copied in full, the prefix
  parser stops after ``max_chars / 2`` values, and a serialisation attempt
  stops as soon as its output passes the budget.

A leading byte-order mark (U+FEFF) is an encoding mark, not content: it is
dropped from ``str`` and ``bytes`` alike. Pure (no I/O, no logging, no global
mutable state); an instance can be shared between threads. Reading JSON lives in
``truncate_json``, writing it in ``truncate_write``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .truncate_direct import fitted_text
from .truncate_edges import bytes_head, bytes_tail, clip_head, clip_tail
from .truncate_fast import UNSURE, long_int
from .truncate_fast import loads as fast_loads
from .truncate_json import (
    JSON_START,
    MISSING,
    Invalid,
    NotStrict,
    decode,
    decode_strict,
    parse_prefix,
    skip_ws,
)
from .truncate_write import (
    Clips,
    Limits,
    OverBudget,
    Plain,
    Writer,
    estimate,
    quote,
)

__all__ = ["ToolOutputTruncator", "TruncationResult"]

_CLOSERS = {"[": "]", "{": "}", '"': '"'}
_DEPTH_CAP = 100  # far below the recursion limit, whatever max_depth says
_JUMPS = 4  # attempts that jump to the rows the prefix sums say fit, then halving
_REFINE = 3  # attempts spent growing the limits back after the first fit
_BOM = "\ufeff"
_Parsed = tuple[object, str, frozenset[int], bool]  # value, note, open ids, orjson read it


@dataclass(slots=True, frozen=True)
class TruncationResult:
    """One truncation: the text to use and what it saved.

    ``original_chars`` is exact for ``str`` (characters) and ``bytes`` (bytes).
    For Python objects it is the exact JSON length when nothing was cut, else an
    *estimate* from a sampled, bounded walk (a full walk would defeat the bound).
    ``truncated`` means content was dropped; JSON only compacted to fit is not.
    """

    text: str
    original_chars: int
    truncated: bool
    is_json: bool

    @property
    def saved_chars(self) -> int:
        return max(0, self.original_chars - len(self.text))


def _exponent(text: str, cache: Plain) -> bool:
    """Does ``text``, or a row encoded for it, write a float with a positive exponent?"""
    return "e+" in text or any("e+" in rows.body for rows in cache.rows.values())


def _plausible_end(first: str, tail: str) -> bool:
    """Cheap check on an input we will not read in full: does it end like JSON?"""
    last = tail.rstrip()[-1:]
    return bool(last) and last == _CLOSERS.get(first, last)


class ToolOutputTruncator:
    """Shrink tool outputs to at most ``max_chars`` characters, keeping JSON valid.

    ``max_depth``, ``max_items``, ``max_keys`` and ``max_string`` (chars of one
    string; default: the budget) shape the output, but the budget always wins
    (see :meth:`_render`); they shape only what does not fit as it is. A text
    longer than ``parse_limit`` (default ``64 * max_chars``: a larger one costs
    decoding time for nothing that can be shown) is only parsed over its first
    ``min(parse_limit, 64 * max_chars)`` characters (bytes). Text within the
    budget comes back verbatim, except JSON that is not strict (NaN, Infinity,
    ints Python's ``json`` refuses), which is rewritten so that ``is_json``
    always means strict JSON.
    Counters: ``calls``, ``truncations`` (calls that dropped content) and
    ``bytes_saved``, which counts *characters* (the name is the dashboard's).
    """

    def __init__(
        self,
        max_chars: int = 2000,
        max_depth: int = 8,
        max_items: int = 50,
        max_keys: int = 50,
        max_string: int | None = None,
        parse_limit: int | None = None,
    ) -> None:
        limits = {
            "max_chars": max_chars,
            "max_depth": max_depth,
            "max_items": max_items,
            "max_keys": max_keys,
            "max_string": 1 if max_string is None else max_string,
            "parse_limit": 1 if parse_limit is None else parse_limit,
        }
        for name, v in limits.items():
            low = 64 if name == "max_chars" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                why = " (room for the truncation markers)" if low > 1 else ""
                raise ValueError(f"{name} must be an int >= {low}{why}, got {v!r}")
        self.max_chars, self.max_depth = max_chars, max_depth
        self.parse_limit = 64 * max_chars if parse_limit is None else parse_limit
        self.max_items, self.max_keys, self.max_string = max_items, max_keys, max_string
        self._string0 = min(max_string or max_chars, max_chars)
        self._preview = max(64, max_chars // 16)  # strings are cut first, down to this
        self._window = min(self.parse_limit, 64 * max_chars)
        self._max_values = max_chars // 2 + 16  # each value shown takes >= 2 chars
        self._jumps = _JUMPS  # 0: the plain halving search (tests compare both paths)
        self._direct = True  # rows of the common shape counted in closed form (see _render)
        self._lock = threading.Lock()
        self.calls = self.truncations = self.bytes_saved = 0

    def truncate(self, output: object) -> str:
        """Return ``output`` as text of at most ``max_chars`` characters."""
        return self.truncate_ex(output).text

    def truncate_ex(self, output: object) -> TruncationResult:
        """Like :meth:`truncate`, with the sizes, for accounting and the dashboard."""
        if isinstance(output, str):
            result = self._from_text(output, int(output[:1] == _BOM), len(output), "chars")
        elif isinstance(output, (bytes, bytearray)) and len(output) <= self.parse_limit:
            text = output.decode("utf-8-sig", "replace")
            result = self._from_text(text, 0, len(output), "bytes")
        elif isinstance(output, (bytes, bytearray)):  # too big to decode in full
            n, edge = len(output), 4 * self.max_chars  # edge bytes hold >= max_chars chars
            result = self._from_json(
                bytes_head(output, self._window), bytes_tail(output, 256), n, "bytes", False
            ) or self._text_cut(bytes_head(output, edge), bytes_tail(output, edge), n, "bytes", n)
        else:
            result = self._from_object(output)
        with self._lock:
            self.calls += 1
            self.truncations += result.truncated
            self.bytes_saved += result.saved_chars
        return result

    def _from_text(self, s: str, start: int, total: int, unit: str) -> TruncationResult:
        """``s[start:]`` (``start`` skips a BOM) is all we read of a text up to
        ``parse_limit``; of a longer one only its first ``_window`` chars and its end."""
        n = len(s) - start
        if n <= self.max_chars:
            return self._fitting(s[start:] if start else s, total, unit)
        whole = n <= self.parse_limit
        head = (s[start:] if start else s) if whole else s[start : start + self._window]
        return self._from_json(head, s[-256:], total, unit, whole) or self._text_cut(
            s[start : start + self.max_chars], s, n, "chars", total
        )

    def _fitting(self, s: str, total: int, unit: str) -> TruncationResult:
        """Text within the budget: verbatim, unless it claims JSON that is not strict
        (NaN, Infinity, an int Python's json cannot read): then it is rewritten."""
        i = skip_ws(s)
        if i < len(s) and s[i] in JSON_START:
            try:
                if fast_loads(s) is UNSURE:  # orjson refuses NaN / Infinity: ask json
                    decode_strict(s)
                return TruncationResult(s, total, False, True)
            except (NotStrict, ValueError, RecursionError):
                if (result := self._from_json(s, s, total, unit, True)) is not None:
                    return result
        return TruncationResult(s, total, False, False)

    def _from_json(
        self, head: str, tail: str, total: int, unit: str, whole: bool
    ) -> TruncationResult | None:
        """Bounded JSON for ``head`` (the whole text if ``whole``); None if not JSON."""
        parsed = self._parse(head, tail, total, unit, whole, guard=False)
        if parsed is None:
            return None
        value, note, open_ids, fast = parsed
        if value is MISSING:
            return TruncationResult(self._fallback("JSON", f"{total:,} {unit}"), total, True, True)
        cache, direct = Plain(fast), None
        if self._direct and self._jumps and not note and not open_ids:
            first = self._limits(min(self.max_depth, _DEPTH_CAP), 1.0, 1.0)
            direct = fitted_text(value, cache, self.max_chars, first, self._jumps)
            # an int orjson read as a float (>= 2**63) is written with "e+": if no value
            # the closed form looked at was, orjson read all of them as json does
            if direct is not None and not (fast and _exponent(direct, cache)):
                return TruncationResult(direct, total, True, True)
        if fast and long_int(head):  # read again, by json: ints beyond 64 bits stay ints
            parsed = self._parse(head, tail, total, unit, whole)
            if parsed is None:
                return None
            value, note, open_ids, fast = parsed
            cache = Plain(fast)
        elif direct is not None:  # an exponent, but no int orjson could have misread
            return TruncationResult(direct, total, True, True)
        writer = self._render(value, note, open_ids, cache)
        text = "".join(writer.parts) if writer else self._fallback("JSON", f"{total:,} {unit}")
        return TruncationResult(text, total, writer is None or writer.cut or bool(note), True)

    def _parse(
        self, head: str, tail: str, total: int, unit: str, whole: bool, guard: bool = True
    ) -> _Parsed | None:
        """Decode a whole text; the bounded prefix parser for the head of a huge one, or
        for a text nested too deep for the C decoder. None: not JSON. ``guard=False``:
        orjson may have read an int beyond 64 bits as a float (see ``_from_json``)."""
        i = 0 if head[:1] in JSON_START else skip_ws(head)  # (the common case: no space)
        if i == len(head) or head[i] not in JSON_START:
            return None
        if whole:
            if (value := fast_loads(head, guard)) is not UNSURE:
                return value, "", frozenset(), True
            try:
                return decode(head), "", frozenset(), False
            except RecursionError:
                total, unit = len(head), "chars"
            except ValueError:
                return None
        text = head[: self._window]
        truncated = not whole or len(text) < len(head)
        if truncated and not _plausible_end(head[i], tail):
            return None
        depth = min(self.max_depth, _DEPTH_CAP) + 1
        try:
            value, open_ids, stop = parse_prefix(text, truncated, depth, self._max_values)
        except Invalid:
            return None
        if stop < len(text):  # stopped early: say where, in the input's unit
            at = stop if unit == "chars" else len(text[:stop].encode("utf-8", "replace"))
        elif truncated:
            at = self._window
        else:
            return value, "", open_ids, False
        return value, f"input cut at {at:,} of {total:,} {unit}", open_ids, False

    def _from_object(self, obj: object) -> TruncationResult:
        writer = self._render(obj, "", frozenset())
        text = "".join(writer.parts) if writer else ""
        if writer is not None and not writer.cut:
            return TruncationResult(text, len(text), False, True)
        try:
            guess = estimate(obj, 0, [512])
        except Exception:  # user containers may raise from len() or iteration
            guess = 0
        text = text or self._fallback(type(obj).__name__, f"~{guess:,} chars")
        return TruncationResult(text, max(guess, len(text)), True, True)

    def _render(
        self, value: object, note: str, open_ids: frozenset[int], cache: Plain | None = None
    ) -> Writer | None:
        """Serialise ``value`` within the budget, tightening the limits until it fits.

        Each attempt costs O(max_chars). Two scales are halved until the output
        fits: the string limit while long strings fill most of the output and are
        longer than a preview, else the item/key limits (so ten 1 MB values keep
        their ten keys, and a list of short rows keeps its rows). The last halved
        scale is then grown back towards its failing value (a linear guess, else
        bisection), keeping as many rows as fit. If both scales are minimal the
        depth is halved. None: nothing fitted (the caller writes a marker string).
        ``cache``: ``value`` was decoded from JSON text, so closed containers may be
        written from their C encoding (kept for every attempt of this call; see
        ``truncate_rows.Plain``, which also says whether orjson may encode them).
        """
        clips: Clips = {}
        tried: dict[Limits, Writer] = {}
        depth = min(self.max_depth, _DEPTH_CAP)

        def limits(scales: list[float]) -> Limits:
            return self._limits(depth, *scales)

        def attempt(scales: list[float]) -> Writer:
            lim = limits(scales)
            if lim not in tried:
                writer = tried[lim] = Writer(
                    self.max_chars, lim, note, open_ids, clips, self._string0, cache
                )
                try:
                    writer.value(value, 0)
                    writer.fits = writer.size <= self.max_chars
                except (OverBudget, RecursionError):
                    pass
                if not writer.fits:
                    writer.parts.clear()  # only its sizes are still needed
            return tried[lim]

        scales, failed, dim, jumps = [1.0, 1.0], 0.0, 0, 0
        while not (best := attempt(scales)).fits:
            box_min = scales[0] * max(self.max_items, self.max_keys) <= 1
            text_min = scales[1] * self._string0 <= 8
            long_text = best.long * 2 > best.size and scales[1] * self._string0 > self._preview
            if box_min and text_min:
                while not best.fits and depth:  # even one short row is too long: go shallower
                    depth //= 2
                    best = attempt(scales)
                break
            dim = 1 if (long_text or box_min) and not text_min else 0
            failed = scales[dim]
            rows = best.rows_to_try() if dim == 0 and jumps < self._jumps else 0
            if 0 < rows < best.lim.items:  # straight to the rows the prefix sums allow
                scales[0], jumps = rows / self.max_items, jumps + 1
            else:
                scales[dim] /= 2
        if jumps and dim == 0 and best.fits:  # a jump is a guess: does one more row fit?
            trial = [(best.lim.items + 1) / self.max_items, scales[1]]
            if best.refuses(limits(trial)) or not (writer := attempt(trial)).fits:
                return best  # usually known without writing (see Writer.refuses)
            scales, best = trial, writer
        for _ in range(_REFINE if failed and best.fits else 0):
            span, trial = failed - scales[dim], list(scales)
            guess = scales[dim] * self.max_chars / max(best.size, 1)  # size ~ proportional
            trial[dim] = (
                guess if span / 8 < guess - scales[dim] < span * 7 / 8 else scales[dim] + span / 2
            )
            if (writer := attempt(trial)).fits:
                scales, best = trial, writer
            else:
                failed = trial[dim]
        return best if best.fits else None

    def _limits(self, depth: int, box: float, text: float) -> Limits:
        """An attempt's limits at these scales of the item/key and string limits."""
        return Limits(
            depth,
            max(1, round(self.max_items * box)),
            max(1, round(self.max_keys * box)),
            max(1, round(self._string0 * text)),
        )

    def _fallback(self, kind: str, size: str) -> str:
        text = quote(f"...({kind} of {size} truncated)")
        return text if len(text) <= self.max_chars else '"...(truncated)"'

    def _text_cut(
        self, start: str, end: str, total: int, unit: str, original: int
    ) -> TruncationResult:
        """Plain text: head (60 %) + marker + tail, taken from ``start`` and ``end`` (the
        whole text, or decoded edges of a big blob). A count of bytes cut is exact for
        valid UTF-8, approximate where invalid bytes were replaced."""
        room = self.max_chars - len(f"\n...[{total:,} {unit} truncated]...\n")
        h, t = room - room * 2 // 5, room * 2 // 5
        head, tail = clip_head(start, h), clip_tail(end, t)
        kept = len(head) + len(tail) if unit == "chars" else len(head.encode()) + len(tail.encode())
        text = f"{head}\n...[{max(0, total - kept):,} {unit} truncated]...\n{tail}"
        return TruncationResult(text, original, True, False)
