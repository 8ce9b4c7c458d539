"""Heap-size estimates for JSON-shaped messages, computed once per message.

The naive recipe estimates memory as ``len(str(message))``, which ignores the
Python object overhead that dominates small messages (a 3-key dict costs about
180 bytes before its values). Here each container and string is measured with
``sys.getsizeof`` while the message is validated, so the estimate tracks real
heap use (tracemalloc agrees within a few percent on the benchmark workload,
see ``benchmarks/README.md``) and costs one walk per message, at add time:
sessions never re-measure, so accounting stays O(1) per operation.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

from jupyter_agentmem.errors import InvalidMessageError

_getsizeof = sys.getsizeof
# Strings that appear as keys or roles in nearly every message are interned or
# shared by the interpreter, so they cost nothing per message.
_SHARED_MAX_LEN = 16
_MAX_DEPTH = 64
# Lone UTF-16 surrogates (``os.listdir`` names that are not valid UTF-8) cannot be
# written as UTF-8 by SQLite or most JSON readers: refused, so a store never fails later.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Python refuses int <-> str beyond 4,300 digits (sys.get_int_max_str_digits), so
# such an int could be added but never saved: refused too. Below this many bits an
# int always has fewer digits, so only giants pay for the exact check.
_BIG_INT_BITS = 14_000


def check_text(value: str, path: str) -> None:
    """Raise if ``value`` holds a lone surrogate (O(1) for ASCII, one scan otherwise)."""
    if not value.isascii() and (found := _SURROGATE.search(value)) is not None:
        raise InvalidMessageError(
            f"{path} holds the lone surrogate {found.group()!r} at index {found.start()}, "
            "which no store can write as UTF-8; decode bytes with errors='replace' (or "
            "os.fsdecode names with errors='backslashreplace') before adding them"
        )


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as ``\\udcff`` (readable, storable)."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_size(value: Any, path: str = "message", depth: int = 0) -> int:
    """Estimated heap bytes of a JSON value; raises if it is not JSON-shaped.

    Being strict here (no tuples, sets, NaN, non-str keys, lone surrogates or
    giant ints) is what lets a session round-trip through SQLite or Redis
    byte-for-byte later on. The common cases (ASCII text) take the fast paths.
    """
    kind = type(value)
    if kind is str:
        if not value.isascii():
            check_text(value, path)
        return _getsizeof(value)
    if kind is dict:
        if depth >= _MAX_DEPTH:
            raise InvalidMessageError(f"{path} is nested deeper than {_MAX_DEPTH} levels")
        total = _getsizeof(value)
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidMessageError(
                    f"{path} has a {type(key).__name__} key {key!r}: JSON keys must be str"
                )
            if not key.isascii():
                check_text(key, f"{path} key")
            if len(key) > _SHARED_MAX_LEN:
                total += _getsizeof(key)
            if type(item) is str and item.isascii():
                total += _getsizeof(item)
            else:
                total += json_size(item, path, depth + 1)
        return total
    if kind is list:
        if depth >= _MAX_DEPTH:
            raise InvalidMessageError(f"{path} is nested deeper than {_MAX_DEPTH} levels")
        total = _getsizeof(value)
        for item in value:
            total += json_size(item, path, depth + 1)
        return total
    if value is None or kind is bool:
        return 0
    return _scalar_size(value, kind, path)


def _scalar_size(value: Any, kind: type, path: str) -> int:
    if kind is int:
        return _int_size(value, path)
    if kind is float:
        if not math.isfinite(value):
            raise InvalidMessageError(f"{path} holds {value!r}, which JSON cannot represent")
        return _getsizeof(value)
    hint = "use a list" if isinstance(value, (tuple, set)) else "convert it to str, or a dict"
    raise InvalidMessageError(
        f"{path} holds a {kind.__name__}, which is not JSON ({hint}); "
        "messages must be JSON so evicted sessions can be stored and restored exactly"
    )


def _int_size(value: int, path: str) -> int:
    if -5 <= value <= 256:
        return 0  # cached by the interpreter
    if value.bit_length() > _BIG_INT_BITS:
        try:
            str(value)
        except ValueError:
            raise InvalidMessageError(
                f"{path} holds an int of more than {sys.get_int_max_str_digits():,} "
                "digits, which cannot be written as JSON; convert it to str"
            ) from None
    return _getsizeof(value)


def message_size(message: Any) -> int:
    """Validate one chat message and return its estimated heap bytes."""
    if type(message) is not dict:
        raise InvalidMessageError(
            f"a message must be a dict like {{'role': 'user', 'content': '...'}}, "
            f"not {type(message).__name__}"
        )
    role = message.get("role")
    if type(role) is not str or not role:
        raise InvalidMessageError("a message needs a non-empty str 'role' (user, assistant, ...)")
    return json_size(message)


def text_size(text: str) -> int:
    """Heap bytes of a str (used for the running summary)."""
    return _getsizeof(text)
