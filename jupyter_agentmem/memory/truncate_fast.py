"""Optional ``orjson`` for the truncator's hot path; the stdlib ``json`` stays the reference.

Why: decoding a 7.6 KB tool result and encoding its rows with the stdlib C code
is most of a truncation; ``orjson`` (a dependency on CPython) does both ~3-8x faster.
It is used only where its result is provably the stdlib's, else the caller takes
the stdlib path, so the output is byte-for-byte the same with or without it:

* reading: :func:`jupyter_agentmem.fastjson.try_loads` (shared with the stores),
  which leaves NaN / Infinity, lone surrogates, ``1e400`` and a text with a run
  of 19 digits (an int ``orjson`` would read as a float) to the stdlib;
* writing (only values ``orjson`` itself decoded: finite floats, 64-bit ints,
  ``str`` keys): floats below 1e-4 are written unlike ``repr`` (``1e-7`` /
  ``0.00001`` against ``1e-07`` / ``1e-05``), and from 1e16 up by older
  orjson versions (``1e16`` against ``1e+16``; checked once at import), so an
  encoding with ``0.0000``, or with ``e-`` (or any ``e+`` on an older orjson)
  and a digit before ``e``, is left to the stdlib too.

``ENABLED`` is false without ``orjson``; tests switch it off to run both paths.
"""

from __future__ import annotations

from typing import Any

from jupyter_agentmem import fastjson

_orjson = fastjson.ORJSON

__all__ = ["ENABLED", "UNSURE", "dumps", "loads", "long_int"]

ENABLED = _orjson is not None
UNSURE = fastjson.UNSURE  # "ask the stdlib": orjson refused, or might differ
# digits -> "0", "e" kept, the rest " ": an exponent orjson writes shows as "0e"
_EXPONENT = bytes(48 if 48 <= i < 58 else 101 if i == 101 else 32 for i in range(256))
_NATIVE_ONLY = 0 if _orjson is None else _orjson.OPT_PASSTHROUGH_SUBCLASS
# this orjson writes floats from 1e16 up like repr ("1e+16"; older ones wrote "1e16"),
# so only a negative exponent ("1e-7" against "1e-07") needs the digit check
_REPR_EXPONENT = _orjson is not None and all(
    _orjson.dumps(x) == repr(x).encode()
    for x in (1e16, -1.5e16, 1.2345678901234568e17, 9.87e22, 2.5e300, 1e15, 9.999e15, 1e-4)
)


def loads(text: str, guard: bool = True) -> Any:
    """``json.loads(text)`` via orjson, or :data:`UNSURE` (not JSON, or not surely
    read the same: the stdlib then decides). ``guard=False``: an int beyond 64 bits
    may come back as a float, which the caller must rule out (see :func:`long_int`)."""
    if not ENABLED:
        return UNSURE
    try:
        data = text.encode()  # orjson reads UTF-8; a lone surrogate cannot be encoded
    except UnicodeEncodeError:
        return UNSURE
    return fastjson.try_loads(data, guard)


def long_int(text: str) -> bool:
    """Might orjson have read an int of ``text`` (a text it read) as a float?"""
    return fastjson.long_int(text.encode())


def dumps(value: object) -> str | None:
    """Compact JSON of a value that orjson decoded (``ensure_ascii=False``, the
    stdlib's separators ``,`` and ``:``), or None where the stdlib must write it."""
    orjson = _orjson
    if orjson is None:
        return None
    try:
        data: bytes = orjson.dumps(value, option=_NATIVE_ONLY)
    except orjson.JSONEncodeError:
        return None
    # C passes (a regex takes ~10x longer); "0.0000" also flags e.g. 10.00001: harmless.
    # Without "e-" any exponent is "e+", written like repr where _REPR_EXPONENT says so
    if b"0.0000" in data or (
        (b"e-" in data or not _REPR_EXPONENT) and b"0e" in data.translate(_EXPONENT)
    ):
        return None
    return data.decode()
