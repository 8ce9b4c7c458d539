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
from array import array
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
    """Validate one chat message and return its estimated heap bytes.

    The common shapes take :func:`_dict_size`; anything it does not settle (or
    anything wrong) goes through :func:`json_size`, which decides and words the error.
    """
    if type(message) is not dict:
        raise InvalidMessageError(
            f"a message must be a dict like {{'role': 'user', 'content': '...'}}, "
            f"not {type(message).__name__}"
        )
    role = message.get("role")
    if type(role) is not str or not role:
        raise InvalidMessageError("a message needs a non-empty str 'role' (user, assistant, ...)")
    size = _dict_size(message, 0)
    return size if size >= 0 else json_size(message)


# A compact ASCII str costs this plus one byte per character (sys.getsizeof exactly),
# and every finite float the same: the fast walk adds them up without calling it.
_ASCII_STR = _getsizeof("a") - 1
_FLOAT = _getsizeof(0.0)
_isfinite = math.isfinite
# sys.getsizeof(x) is x.__sizeof__() plus the GC header of container types; calling
# the type's own __sizeof__ gives the same number about 6x faster (no special lookup).
GC_HEADER = _getsizeof({}) - dict.__sizeof__({})
_dict_sizeof = dict.__sizeof__
_list_sizeof = list.__sizeof__


def _dict_size(value: dict[Any, Any], depth: int) -> int:
    """:func:`json_size` of a dict for the shapes messages have (ASCII keys; str, small
    int, finite float, None, bool, dict and list values), or -1 when it must decide:
    the same sizes, one call per container instead of one per value."""
    if depth >= _MAX_DEPTH:
        return -1
    total = _dict_sizeof(value) + GC_HEADER
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return -1
        if len(key) > _SHARED_MAX_LEN:
            total += _ASCII_STR + len(key)
        kind = type(item)
        if kind is str:
            if item.isascii():
                total += _ASCII_STR + len(item)
            elif _SURROGATE.search(item) is None:
                total += _getsizeof(item)
            else:
                return -1
        elif kind is dict:
            size = _dict_size(item, depth + 1)
            if size < 0:
                return -1
            total += size
        elif kind is list:
            size = _list_size(item, depth + 1)
            if size < 0:
                return -1
            total += size
        elif item is None or kind is bool:
            continue
        else:
            size = _number_size(item, kind)
            if size < 0:
                return -1
            total += size
    return total


def _list_size(value: list[Any], depth: int) -> int:
    """:func:`_dict_size` for a list."""
    if depth >= _MAX_DEPTH:
        return -1
    total = _list_sizeof(value) + GC_HEADER
    for item in value:
        kind = type(item)
        if kind is dict:
            size = _dict_size(item, depth + 1)
        elif kind is str:
            if item.isascii():
                total += _ASCII_STR + len(item)
                continue
            size = _getsizeof(item) if _SURROGATE.search(item) is None else -1
        elif kind is list:
            size = _list_size(item, depth + 1)
        elif item is None or kind is bool:
            continue
        else:
            size = _number_size(item, kind)
        if size < 0:
            return -1
        total += size
    return total


def _number_size(value: Any, kind: type) -> int:
    """:func:`_scalar_size` of an int or finite float (-1 for anything else)."""
    if kind is int:
        if -5 <= value <= 256:
            return 0
        return _getsizeof(value) if value.bit_length() <= _BIG_INT_BITS else -1
    if kind is float and _isfinite(value):
        return _FLOAT
    return -1


def text_size(text: str) -> int:
    """Heap bytes of a str (used for the running summary)."""
    return _str_sizeof(text)


_str_sizeof = str.__sizeof__  # str is no container: sys.getsizeof adds nothing to it
# What sys.getsizeof adds to array.__sizeof__ (the state's estimate calls the latter).
ARRAY_EXTRA = _getsizeof(array("q")) - array.__sizeof__(array("q"))
