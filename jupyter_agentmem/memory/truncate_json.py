"""Reading JSON for the truncator: strict whole-text decoding and a bounded prefix parser.

Why a module of its own: the truncator must say "JSON" only when its output is
strict JSON, and must never spend more than a bounded amount of work on an
input, however it is shaped. Both concerns live here; the writer
(``truncate_write``) only ever sees plain Python values.

* NaN / Infinity decode to :class:`Const` strings (strict JSON has no such
  numbers); ints beyond CPython's int <-> str limit decode to :class:`BigInt`
  markers, so the output can be read back by any Python ``json``.
* :func:`parse_prefix` reads at most ``max_values`` values, so 100 MB of
  ``[1,1,...]`` or ``[[[...`` costs the same as a few KB.
"""

from __future__ import annotations

import functools
import json
import re
from _json import make_scanner, scanstring
from typing import Any, Final, cast

__all__ = [
    "MISSING",
    "BigInt",
    "Const",
    "CutStr",
    "Invalid",
    "NotStrict",
    "decode",
    "decode_strict",
    "parse_prefix",
    "skip_ws",
]

MISSING: Final = object()
JSON_START = frozenset('{["-0123456789tfnNI')
_WS = re.compile(r"[ \t\n\r]*")
_NUM_TAIL = re.compile(r"[0-9.eE+-]*")  # what may follow a number cut by the window
_LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")
_VALUE, _FIRST, _KEY, _KEY_FIRST, _AFTER = range(5)  # prefix parser states
_INT_LIMIT = 4000  # digits; CPython refuses int <-> str beyond 4,300


class Invalid(Exception):
    """The text is not JSON (as far as the part we read shows)."""


class NotStrict(Exception):
    """The text is JSON with NaN / Infinity: valid for Python, not strict JSON."""


class _Cut(Exception):
    """The parsed prefix ends inside a token (args: the partial string, if any)."""


class CutStr(str):
    """A string that the end of the parsed prefix ran through."""


class Const(str):
    """NaN / Infinity / -Infinity from the input, kept as a string."""


class BigInt:
    """An int too long for CPython's int <-> str conversion: only its size is kept."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _reject(name: str) -> Any:
    raise NotStrict(name)


def _int(text: str) -> object:
    digits = len(text) - (text[0] == "-")
    return int(text) if digits <= _INT_LIMIT else BigInt(digits)


_STRICT = json.JSONDecoder(parse_constant=_reject)
_LOOSE = json.JSONDecoder(parse_constant=Const)
_BIG = json.JSONDecoder(parse_constant=Const, parse_int=_int)
_SCAN = make_scanner(cast(Any, _LOOSE))  # C scanner: one complete value
_SCAN_BIG = make_scanner(cast(Any, _BIG))


def _too_long_int(err: ValueError) -> bool:
    return "integer string conversion" in str(err)


def decode_strict(text: str) -> object:
    """``json.loads`` that raises :class:`NotStrict` on NaN / Infinity and ValueError on
    anything else it cannot read (including a too long int)."""
    return _STRICT.decode(text)


def decode(text: str) -> object:
    """``json.loads`` with NaN / Infinity as :class:`Const` and huge ints as
    :class:`BigInt`; ValueError if not JSON, RecursionError if nested too deep."""
    try:
        return _LOOSE.decode(text)
    except ValueError as err:
        if not _too_long_int(err):
            raise
    return _BIG.decode(text)


def skip_ws(s: str, i: int = 0) -> int:
    m = _WS.match(s, i)
    return m.end() if m else i


def _string_at(s: str, i: int, truncated: bool) -> tuple[str, int]:
    """The JSON string starting at ``s[i]``; raises ``_Cut(partial)`` if the text ends
    inside it, dropping a half escape at the cut."""
    try:
        return scanstring(s, i + 1, True)
    except json.JSONDecodeError as err:
        if not (truncated and (err.msg.startswith("Unterminated") or err.pos >= len(s) - 6)):
            raise Invalid from None
    raw = s[i + 1 :]
    for k in range(7):
        try:
            part = scanstring(raw[: len(raw) - k] + '"', 0, True)[0]
        except ValueError:
            continue
        raise _Cut(part)
    raise _Cut("")


def _scan(s: str, i: int) -> tuple[object, int]:
    try:
        return cast(tuple[object, int], _SCAN(s, i))
    except ValueError as err:
        if not _too_long_int(err):
            raise
    return cast(tuple[object, int], _SCAN_BIG(s, i))


def _value_at(s: str, i: int, truncated: bool) -> tuple[object, int] | None:
    """A complete non-string value at ``s[i]`` via the C scanner; None for a container
    that must be opened by hand; ``_Cut`` for a number or literal cut by the end."""
    try:
        v, j = _scan(s, i)
    except (StopIteration, ValueError, RecursionError):
        if s[i] in "[{":
            return None
        rest = s[i:]
        if truncated and (
            (len(rest) < 10 and any(x.startswith(rest) for x in _LITERALS))
            or _NUM_TAIL.fullmatch(rest)
        ):
            raise _Cut from None
        raise Invalid from None
    if truncated and s[i] not in "[{" and _NUM_TAIL.fullmatch(s, j):
        raise _Cut  # the number may go on past the cut
    return v, j


@functools.lru_cache(maxsize=8)
def _chain(levels: int) -> re.Pattern[str]:
    """``levels`` containers opened in a row (``[[[``, ``{"a":{"a":``, ``[{"k":[``)."""
    key = r'(?:"(?:[^"\\]|\\.)*"\s*:\s*)?'
    return re.compile(rf"(?:[\[{{]\s*{key}){{{levels}}}")


def _add(box: Any, key: str, v: object) -> None:
    if type(box) is list:
        box.append(v)
    else:
        box[key] = v


def parse_prefix(
    s: str, truncated: bool, scan_depth: int, max_values: int
) -> tuple[object, frozenset[int], int]:
    """Parse JSON with an explicit stack, stopping cleanly where ``s`` ends or after
    ``max_values`` values, whichever comes first.

    Why not ``json.loads``: ``s`` may be a prefix of a huge text (so it ends
    inside open containers) or be nested too deep for the C scanner. Complete
    values still go to the C scanner; only the open spine of containers, and
    containers deeper than ``scan_depth`` (a failing C scan costs the rest of the
    text, so it is tried on a few levels only), are walked token by token here.
    ``max_values`` bounds that walk: no more values than that can ever be shown.
    A chain of ``scan_depth`` containers opened in a row is walked by hand too:
    the C scanner would build all of it (slowly: one object per level) for
    nothing, as no more than ``scan_depth`` levels are ever shown.
    Returns the root (``MISSING`` if it was cut), the ids of the containers left
    open by the cut, and where reading stopped (``len(s)`` unless it stopped
    early). Raises :class:`Invalid` on a syntax error.
    """
    n, i, deep = len(s), skip_ws(s), _chain(scan_depth)
    top: list[Any] = []  # holds the root, so that every value has a parent
    stack: list[Any] = [top]
    key, state, cut, values, capped = "", _VALUE, False, 0, False
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
                    raise Invalid
                i = skip_ws(s, i + 1)
            elif state in (_KEY, _KEY_FIRST):
                if c != '"':
                    raise Invalid
                key, j = _string_at(s, i, truncated)
                j = skip_ws(s, j)
                if j < n and s[j] != ":":
                    raise Invalid
                i, state = skip_ws(s, j + 1), _VALUE
            else:
                if values >= max_values:
                    cut = truncated = capped = True
                    break
                values += 1
                got: tuple[object, int] | None = None  # None: open a container by hand
                if c == '"':
                    got = _string_at(s, i, truncated)
                elif c not in "[{" or (
                    # the root of a cut text cannot end inside it: a C scan would be wasted
                    not (truncated and len(stack) == 1)
                    and len(stack) <= scan_depth
                    and not deep.match(s, i)  # nor a chain too deep to show
                ):
                    got = _value_at(s, i, truncated)
                if got is None:
                    opened: Any = [] if c == "[" else {}
                    stack.append(opened)
                    got = opened, i + 1
                _add(box, key, got[0])
                i = skip_ws(s, got[1])
                state = _AFTER if stack[-1] is box else _FIRST if c == "[" else _KEY_FIRST
            if len(stack) == 1 and top:
                break
    except _Cut as err:
        cut = True
        if err.args and state in (_VALUE, _FIRST):
            _add(stack[-1], key, CutStr(err.args[0]))
    if (cut or len(stack) > 1 or not top) and not truncated:
        raise Invalid
    if not cut and len(stack) == 1 and top and i < n:
        raise Invalid  # extra data after the value
    return (top[0] if top else MISSING), frozenset(id(x) for x in stack[1:]), i if capped else n
