"""JSON decoding through ``orjson``, only where it reads exactly what ``json`` reads.

Why: decoding a stored 14 KB session document is a third of a restore, and
``orjson`` (a dependency on CPython) does it ~4x faster than the stdlib C decoder.
The stdlib stays the reference: :func:`loads` uses ``orjson`` only where the
result is provably ``json.loads``'s, else it asks ``json`` itself, so nothing
changes without the wheel or for an input ``orjson`` reads differently:

* ``orjson`` refuses NaN / Infinity, lone surrogates, nesting past 1,024 and
  ``1e400``, which ``json`` accepts: those inputs go to ``json``;
* it reads an int beyond 64 bits as a float: a text with a run of 19 digits
  (two C passes, ``bytes.translate`` and a substring search; a regex takes ~10x
  longer) goes to ``json``.

``ENABLED`` is false without ``orjson``; tests switch it off to run both paths.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Final

ORJSON: ModuleType | None  # the module, for the truncator's writer too (truncate_fast)
try:
    import orjson as ORJSON
except ImportError:  # Pythons without an orjson wheel (PyPy): the stdlib alone
    ORJSON = None

__all__ = ["ENABLED", "ORJSON", "UNSURE", "loads", "long_int", "try_loads"]

ENABLED = ORJSON is not None
UNSURE: Final = object()  # "ask the stdlib": orjson refused, or might read it differently
DIGITS_TO_ZERO: Final = bytes(48 if 48 <= i < 58 else 32 for i in range(256))  # digit->"0"
LONG_INT: Final = b"0" * 19  # a run of 19 digits may be an int orjson reads as a float


def long_int(data: bytes) -> bool:
    """Might ``data`` hold an int orjson reads as a float (a run of 19 digits)?"""
    return LONG_INT in data.translate(DIGITS_TO_ZERO)


def try_loads(data: bytes, guard: bool = True) -> Any:
    """``json.loads(data)`` via orjson, or :data:`UNSURE` (not JSON, or not surely
    read the same: the caller then asks the stdlib, which decides). ``guard=False``
    skips the :func:`long_int` check, for a caller that makes it only when an int
    beyond 64 bits could matter (orjson reads one as a finite float >= 2**63)."""
    orjson = ORJSON
    if not ENABLED or orjson is None or (guard and long_int(data)):
        return UNSURE
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return UNSURE


def loads(data: bytes | str) -> Any:
    """Exactly ``json.loads(data)`` (same value, same ``ValueError`` on bad input), faster
    with ``orjson`` installed. ``bytes`` must be UTF-8."""
    if ENABLED:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        value = try_loads(raw)
        if value is not UNSURE:
            return value
    return json.loads(data)
