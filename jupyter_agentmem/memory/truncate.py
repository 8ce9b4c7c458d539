"""Budget-safe, JSON-preserving truncation of tool outputs.

Why: a tool result is pasted into the next LLM request and then kept in the
conversation, so one oversized result costs memory and tokens on every later
turn. The naive truncator (cut lists to 5 items and dicts to 10 keys, append
text) breaks JSON and still busts its budget. This one guarantees that

* the result is never longer than ``max_chars`` characters (Python ``len``);
* JSON in gives strict JSON out, with the ``...`` markers *inside* the JSON;
* work per call is bounded by the budget, not the input: a huge text is never
  parsed, decoded or copied in full, and a serialisation attempt stops as soon
  as its output passes the budget.

Pure (no I/O, no logging, no global mutable state); an instance can be shared
between threads.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import re
import threading
from _json import encode_basestring as _quote  # the C pieces json itself uses; _quote
from _json import make_scanner, scanstring  # keeps non-ASCII as is (ensure_ascii=False)
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, cast

__all__ = ["ToolOutputTruncator", "TruncationResult"]

_WS = re.compile(r"[ \t\n\r]*")
_NUM_TAIL = re.compile(r"[0-9.eE+-]*")  # what may follow a number cut by the window
_JSON_START = frozenset('{["-0123456789tfnNI')
_CLOSERS = {"[": "]", "{": "}", '"': '"'}
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
_SCAN = make_scanner(cast(Any, json.JSONDecoder()))  # C scanner: one complete value
_MISSING: Final = object()
_DEPTH_CAP = 100  # far below the recursion limit, whatever max_depth says
_REFINE = 3  # attempts spent growing the limits back after the first fit
_ARRAY_TOLIST_MAX = 1024  # numpy-like arrays up to this many elements become lists
_VALUE, _FIRST, _KEY, _KEY_FIRST, _AFTER = range(5)  # prefix parser states
_Clips = dict[tuple[int, bool], tuple[object, str, int]]


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


class _OverBudget(Exception):
    """Aborts a serialisation attempt once its output passed the budget."""


class _Invalid(Exception):
    """The text is not JSON (as far as the part we read shows)."""


class _Cut(Exception):
    """The parsed prefix ends inside a token (args: the partial string, if any)."""


class _CutStr(str):
    """A string that the end of the parsed prefix ran through."""


@dataclass(slots=True, frozen=True)
class _Limits:
    depth: int
    items: int
    keys: int
    string: int


def _skip(s: str, i: int = 0) -> int:
    m = _WS.match(s, i)
    return m.end() if m else i


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _head(s: str, k: int) -> str:
    """First ``k`` chars, not ending on the first half of a surrogate pair."""
    h = s[: max(k, 0)]
    return h[:-1] if h and "\ud800" <= h[-1] <= "\udbff" else h


def _tail(s: str, k: int) -> str:
    """Last ``k`` chars, not starting on the second half of a surrogate pair."""
    t = s[len(s) - k :] if k > 0 else ""
    return t[1:] if t and "\udc00" <= t[0] <= "\udfff" else t


def _bytes_head(b: bytes | bytearray, k: int) -> str:
    """Decode the first ~``k`` bytes (at most ``k`` chars), cut on a UTF-8 boundary."""
    if k < len(b):
        for _ in range(3):
            k -= 1 if k > 0 and b[k] & 0xC0 == 0x80 else 0
        b = b[:k]
    return b.decode("utf-8-sig", "replace")


def _bytes_tail(b: bytes | bytearray, k: int) -> str:
    """Decode the last ~``k`` bytes (at most ``k`` chars), cut on a UTF-8 boundary."""
    start = max(len(b) - k, 0)
    for _ in range(3):
        start += 1 if start < len(b) and b[start] & 0xC0 == 0x80 else 0
    return b[start:].decode("utf-8", "replace")


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


class _Writer:
    """One serialisation attempt under fixed limits.

    Why it is cheap: every visited node writes at least one char and the budget
    is checked before each value, so an attempt visits O(cap) nodes whatever the
    input size. ``clips`` (clipped repr/str results) is shared by the attempts
    of one call, so ``repr`` runs at most once per object that is kept.
    """

    def __init__(
        self,
        cap: int,
        lim: _Limits,
        note: str,
        open_ids: frozenset[int],
        clips: _Clips,
        clip_len: int,
    ) -> None:
        self.cap, self.lim, self.note, self.open_ids = cap, lim, note, open_ids
        self.clips, self.clip_len = clips, clip_len
        self.parts: list[str] = []
        self.size = 0
        self.cut = False  # set when any content was dropped
        self.fits = False  # set when the attempt finished within the budget
        self.long = 0  # chars written for strings longer than 40 chars
        self.path: list[int] = []  # ids of the containers being written, to spot cycles

    def put(self, s: str) -> None:
        self.size += len(s)
        self.parts.append(s)

    def marker(self, text: str) -> None:
        self.cut = True
        self.put(_quote(text))

    def value(self, v: object, depth: int) -> None:
        if self.size > self.cap:
            raise _OverBudget
        if isinstance(v, str):
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
            self.container(v, len(v), v.items(), depth, True)
        elif type(v) is list or type(v) is tuple:
            self.container(v, len(v), v, depth, False)
        elif isinstance(v, (bytes, bytearray)):
            self.blob(v)
        else:
            self.other(v, depth)

    def string(self, text: str, total: int, unit: str = "chars") -> None:
        """Write a JSON string: ``text`` is the whole string, or a head+tail clip of one
        ``total`` long whose parts are each at least as long as the string limit."""
        room, start = self.lim.string, self.size
        if type(text) is _CutStr:
            mark = f"...({self.note})"
            self.marker(_head(text, room - len(mark)) + mark)
        elif total <= room:
            self.put(_quote(text))
        else:
            approx = "~" if unit == "bytes" else ""
            keep = max(0, room - len(f"...({approx}{total:,} {unit} cut)..."))
            head, tail = _head(text, keep - keep * 2 // 5), _tail(text, keep * 2 // 5)
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
            self.string(_bytes_head(b, 4 * k) + _bytes_tail(b, 4 * k), len(b), "bytes")

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
        self.put("{" if is_dict else "[")
        shown, room = 0, self.lim.string
        for entry in islice(items, self.lim.keys if is_dict else self.lim.items):
            sep = "," if shown else ""
            if not is_dict:
                self.put(sep)
                self.value(entry, depth + 1)
            elif isinstance(k := entry[0], str) and len(k) <= room:  # common case: one piece
                self.put(f"{sep}{_quote(k)}:")
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
        except (_OverBudget, RecursionError):
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


def _string_at(s: str, i: int, truncated: bool) -> tuple[str, int]:
    """The JSON string starting at ``s[i]``; raises ``_Cut(partial)`` if the text ends
    inside it, dropping a half escape at the cut."""
    try:
        return scanstring(s, i + 1, True)
    except json.JSONDecodeError as err:
        if not (truncated and (err.msg.startswith("Unterminated") or err.pos >= len(s) - 6)):
            raise _Invalid from None
    raw = s[i + 1 :]
    for k in range(7):
        try:
            part = scanstring(raw[: len(raw) - k] + '"', 0, True)[0]
        except ValueError:
            continue
        raise _Cut(part)
    raise _Cut("")


def _value_at(s: str, i: int, truncated: bool) -> tuple[object, int] | None:
    """A complete non-string value at ``s[i]`` via the C scanner; None for a container
    that must be opened by hand; ``_Cut`` for a number or literal cut by the end."""
    try:
        v, j = _SCAN(s, i)
    except (StopIteration, ValueError, RecursionError):
        if s[i] in "[{":
            return None
        rest = s[i:]
        if truncated and (
            (len(rest) < 10 and any(x.startswith(rest) for x in _LITERALS))
            or _NUM_TAIL.fullmatch(rest)
        ):
            raise _Cut from None
        raise _Invalid from None
    if truncated and s[i] not in "[{" and _NUM_TAIL.fullmatch(s, j):
        raise _Cut  # the number may go on past the cut
    return v, j


def _add(box: Any, key: str, v: object) -> None:
    if type(box) is list:
        box.append(v)
    else:
        box[key] = v


def _parse_prefix(s: str, truncated: bool, scan_depth: int) -> tuple[object, frozenset[int]]:
    """Parse JSON with an explicit stack, stopping cleanly where ``s`` ends.

    Why not ``json.loads``: ``s`` may be a prefix of a huge text (so it ends
    inside open containers) or be nested too deep for the C scanner. Complete
    values still go to the C scanner; only the open spine of containers, and
    containers deeper than ``scan_depth`` (a failing C scan costs the rest of the
    text, so it is tried on a few levels only), are walked token by token here.
    Returns the root (``_MISSING`` if it was cut) and the ids of the containers
    left open by the cut. Raises ``_Invalid`` on a syntax error.
    """
    n, i = len(s), _skip(s)
    top: list[Any] = []  # holds the root, so that every value has a parent
    stack: list[Any] = [top]
    key, state, cut = "", _VALUE, False
    try:
        while i < n:
            c, box = s[i], stack[-1]
            if state == _AFTER or (c in "]}" and state in (_FIRST, _KEY_FIRST)):
                if c == "," and state == _AFTER:
                    state = _KEY if type(box) is dict else _VALUE
                elif c == ("]" if type(box) is list else "}"):
                    stack.pop()
                    state = _AFTER
                else:
                    raise _Invalid
                i = _skip(s, i + 1)
            elif state in (_KEY, _KEY_FIRST):
                if c != '"':
                    raise _Invalid
                key, j = _string_at(s, i, truncated)
                j = _skip(s, j)
                if j < n and s[j] != ":":
                    raise _Invalid
                i, state = _skip(s, j + 1), _VALUE
            else:
                got: tuple[object, int] | None = None  # None: open a container by hand
                if c == '"':
                    got = _string_at(s, i, truncated)
                elif c not in "[{" or len(stack) <= scan_depth:
                    got = _value_at(s, i, truncated)
                if got is None:
                    opened: Any = [] if c == "[" else {}
                    stack.append(opened)
                    got = opened, i + 1
                _add(box, key, got[0])
                i = _skip(s, got[1])
                state = _AFTER if stack[-1] is box else _FIRST if c == "[" else _KEY_FIRST
            if len(stack) == 1 and top:
                break
    except _Cut as err:
        cut = True
        if err.args and state in (_VALUE, _FIRST):
            _add(stack[-1], key, _CutStr(err.args[0]))
    if (cut or len(stack) > 1 or not top) and not truncated:
        raise _Invalid
    if not cut and len(stack) == 1 and top and i < n:
        raise _Invalid  # extra data after the value
    return (top[0] if top else _MISSING), frozenset(id(x) for x in stack[1:])


def _plausible_end(first: str, tail: str) -> bool:
    """Cheap check on an input we will not read in full: does it end like JSON?"""
    last = tail.rstrip()[-1:]
    return bool(last) and last == _CLOSERS.get(first, last)


def _estimate(obj: object, depth: int, budget: list[int]) -> int:
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
    sample = [8 + _estimate(v, depth + 1, budget) for v in islice(values, 8)]
    return 2 + (sum(sample) * len(obj) // len(sample) if sample else 0)


class ToolOutputTruncator:
    """Shrink tool outputs to at most ``max_chars`` characters, keeping JSON valid.

    ``max_depth``, ``max_items``, ``max_keys`` and ``max_string`` (chars of one
    string; default: the budget) shape the output, but the budget always wins
    (see :meth:`_render`). A text longer than ``parse_limit`` is only parsed over
    its first ``min(parse_limit, 64 * max_chars)`` characters (bytes).
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
        parse_limit: int = 2_000_000,
    ) -> None:
        limits = {
            "max_chars": max_chars,
            "max_depth": max_depth,
            "max_items": max_items,
            "max_keys": max_keys,
            "max_string": 1 if max_string is None else max_string,
            "parse_limit": parse_limit,
        }
        for name, v in limits.items():
            low = 64 if name == "max_chars" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                why = " (room for the truncation markers)" if low > 1 else ""
                raise ValueError(f"{name} must be an int >= {low}{why}, got {v!r}")
        self.max_chars, self.max_depth, self.parse_limit = max_chars, max_depth, parse_limit
        self.max_items, self.max_keys, self.max_string = max_items, max_keys, max_string
        self._string0 = min(max_string or max_chars, max_chars)
        self._preview = max(64, max_chars // 16)  # strings are cut first, down to this
        self._window = min(parse_limit, 64 * max_chars)
        self._lock = threading.Lock()
        self.calls = self.truncations = self.bytes_saved = 0

    def truncate(self, output: object) -> str:
        """Return ``output`` as text of at most ``max_chars`` characters."""
        return self.truncate_ex(output).text

    def truncate_ex(self, output: object) -> TruncationResult:
        """Like :meth:`truncate`, with the sizes, for accounting and the dashboard."""
        if isinstance(output, str):
            result = self._from_text(output, len(output), "chars")
        elif isinstance(output, (bytes, bytearray)) and len(output) <= self.parse_limit:
            result = self._from_text(output.decode("utf-8-sig", "replace"), len(output), "bytes")
        elif isinstance(output, (bytes, bytearray)):  # too big to decode in full
            n, edge = len(output), 4 * self.max_chars  # edge bytes hold >= max_chars chars
            result = self._from_json(
                _bytes_head(output, self._window), _bytes_tail(output, 256), n, "bytes", False
            ) or self._text_cut(_bytes_head(output, edge), _bytes_tail(output, edge), n, "bytes", n)
        else:
            result = self._from_object(output)
        with self._lock:
            self.calls += 1
            self.truncations += result.truncated
            self.bytes_saved += result.saved_chars
        return result

    def _from_text(self, s: str, total: int, unit: str) -> TruncationResult:
        if len(s) <= self.max_chars:
            return TruncationResult(s, total, False, self._parse(s, s, total, unit) is not None)
        whole = len(s) <= self.parse_limit
        return self._from_json(
            s if whole else s[: self._window], s[-256:], total, unit, whole
        ) or self._text_cut(s, s, len(s), "chars", total)

    def _from_json(
        self, head: str, tail: str, total: int, unit: str, whole: bool
    ) -> TruncationResult | None:
        """Bounded JSON for ``head`` (the whole text if ``whole``); None if not JSON."""
        parsed = self._parse(head, tail, total, unit, whole)
        if parsed is None:
            return None
        value, note, open_ids = parsed
        writer = None if value is _MISSING else self._render(value, note, open_ids)
        text = "".join(writer.parts) if writer else self._fallback("JSON", f"{total:,} {unit}")
        return TruncationResult(text, total, writer is None or writer.cut or bool(note), True)

    def _parse(
        self, head: str, tail: str, total: int, unit: str, whole: bool = True
    ) -> tuple[object, str, frozenset[int]] | None:
        """``json.loads`` for a whole text; the bounded prefix parser for the head of a
        huge one, or for a text nested too deep for ``json.loads``. None: not JSON."""
        i = _skip(head)
        if i == len(head) or head[i] not in _JSON_START:
            return None
        if whole:
            try:
                return json.loads(head), "", frozenset()
            except RecursionError:
                total, unit = len(head), "chars"
            except ValueError:
                return None
        text = head[: self._window]
        truncated = not whole or len(text) < len(head)
        if truncated and not _plausible_end(head[i], tail):
            return None
        try:
            value, open_ids = _parse_prefix(text, truncated, min(self.max_depth, _DEPTH_CAP) + 1)
        except _Invalid:
            return None
        note = f"input cut at {self._window:,} of {total:,} {unit}" if truncated else ""
        return value, note, open_ids

    def _from_object(self, obj: object) -> TruncationResult:
        writer = self._render(obj, "", frozenset())
        text = "".join(writer.parts) if writer else ""
        if writer is not None and not writer.cut:
            return TruncationResult(text, len(text), False, True)
        try:
            estimate = _estimate(obj, 0, [512])
        except Exception:  # user containers may raise from len() or iteration
            estimate = 0
        text = text or self._fallback(type(obj).__name__, f"~{estimate:,} chars")
        return TruncationResult(text, max(estimate, len(text)), True, True)

    def _render(self, value: object, note: str, open_ids: frozenset[int]) -> _Writer | None:
        """Serialise ``value`` within the budget, tightening the limits until it fits.

        Each attempt costs O(max_chars). Two scales are halved until the output
        fits: the string limit while long strings fill most of the output and are
        longer than a preview, else the item/key limits (so ten 1 MB values keep
        their ten keys, and a list of short rows keeps its rows). The last halved
        scale is then grown back towards its failing value (a linear guess, else
        bisection), keeping as many rows as fit. If both scales are minimal the
        depth is halved. None: nothing fitted (the caller writes a marker string).
        """
        clips: _Clips = {}
        tried: dict[_Limits, _Writer] = {}
        depth = min(self.max_depth, _DEPTH_CAP)

        def attempt(scales: list[float]) -> _Writer:
            box, text = scales
            lim = _Limits(
                depth,
                max(1, round(self.max_items * box)),
                max(1, round(self.max_keys * box)),
                max(1, round(self._string0 * text)),
            )
            if lim not in tried:
                writer = tried[lim] = _Writer(
                    self.max_chars, lim, note, open_ids, clips, self._string0
                )
                try:
                    writer.value(value, 0)
                    writer.fits = writer.size <= self.max_chars
                except (_OverBudget, RecursionError):
                    pass
                if not writer.fits:
                    writer.parts.clear()  # only its sizes are still needed
            return tried[lim]

        scales, failed, dim = [1.0, 1.0], 0.0, 0
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
            scales[dim] /= 2
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

    def _fallback(self, kind: str, size: str) -> str:
        text = _quote(f"...({kind} of {size} truncated)")
        return text if len(text) <= self.max_chars else '"...(truncated)"'

    def _text_cut(
        self, start: str, end: str, total: int, unit: str, original: int
    ) -> TruncationResult:
        """Plain text: head (60 %) + marker + tail, taken from ``start`` and ``end`` (the
        whole text, or decoded edges of a big blob). A count of bytes cut is exact for
        valid UTF-8, approximate where invalid bytes were replaced."""
        room = self.max_chars - len(f"\n...[{total:,} {unit} truncated]...\n")
        h, t = room - room * 2 // 5, room * 2 // 5
        head, tail = _head(start, h), _tail(end, t)
        kept = len(head) + len(tail) if unit == "chars" else len(head.encode()) + len(tail.encode())
        text = f"{head}\n...[{max(0, total - kept):,} {unit} truncated]...\n{tail}"
        return TruncationResult(text, original, True, False)
