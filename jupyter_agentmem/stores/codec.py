"""The stored form of a session document: one format byte, then JSON (maybe zlib-packed).

``j`` is plain UTF-8 JSON, ``z`` zlib-compressed JSON, so a stored value says
how to read it and nothing is ever pickled. Redis stores every document so;
SQLite stores a document as JSON text, or as a ``z`` BLOB when it is larger than
the threshold (:func:`pack`). Errors come back as ``ValueError`` with the
reason; the store names the session and raises its own error.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from jupyter_agentmem import fastjson

from .base import LogEntry, SessionData

__all__ = [
    "ZLIB",
    "decode",
    "decode_log",
    "encode",
    "encode_log",
    "pack",
    "storable_json",
    "unpack",
]

_JSON, ZLIB = b"j", b"z"
# Level 3: half the CPU of level 6 for ~10 % more bytes on session documents
# (benchmarks/README.md, "Stores"); both levels read back the same.
_ZLIB_LEVEL = 3


# What json.dumps(value, ensure_ascii=..., allow_nan=False, separators=(",", ":")) builds
# on every call, built once: the turn-log writer encodes every message.
_UTF8_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_JSON = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def storable_json(value: Any) -> str:
    """Compact JSON text that every store can write as UTF-8: lone surrogates (e.g. file
    names that are not UTF-8) are escaped, and ``json.loads`` restores them exactly.

    Raises ``TypeError``/``ValueError`` when ``value`` is not JSON (NaN included).
    """
    text = _UTF8_JSON.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _ASCII_JSON.encode(value)
    return text


def encode(data: SessionData, compress_threshold: int) -> bytes:
    """``data`` as a stored value; zlib only above the threshold and only when smaller.

    Raises ``TypeError``/``ValueError`` when ``data`` is not a JSON document.
    """
    raw = _UTF8_JSON.encode(data).encode("utf-8", "surrogatepass")
    return pack(raw, compress_threshold) or _JSON + raw


def pack(raw: bytes, compress_threshold: int) -> bytes | None:
    """``z`` + zlib of ``raw`` (UTF-8 JSON) when it is above the threshold and smaller
    packed, else None. A 14 KB document packs to ~1.4 KB: one SQLite page instead of
    four overflow pages, a quarter of the write time."""
    if len(raw) > compress_threshold:
        packed = zlib.compress(raw, _ZLIB_LEVEL)
        if len(packed) < len(raw):
            return ZLIB + packed
    return None


def unpack(blob: bytes) -> bytes:
    """The UTF-8 JSON of a stored value; ``ValueError`` when damaged."""
    head, body = blob[:1], blob[1:]
    try:
        if head == ZLIB:
            return zlib.decompress(body)
    except zlib.error as exc:
        raise ValueError(str(exc)) from exc
    if head != _JSON:
        raise ValueError(f"unknown format byte {head!r}")
    return body


def decode(rev: Any, blob: bytes) -> Any:
    """The JSON value of ``blob`` and the stored revision; ``ValueError`` when damaged."""
    try:
        body = unpack(blob)
        if fastjson.ENABLED and (value := fastjson.try_loads(body)) is not fastjson.UNSURE:
            return value, int(rev)
        return json.loads(body.decode("utf-8", "surrogatepass")), int(rev)
    except TypeError as exc:  # JSON, UTF-8 and zlib errors are ValueErrors already
        raise ValueError(str(exc)) from exc


def encode_log(entry: LogEntry) -> bytes:
    """A turn-log entry as one LIST item: ``writer TAB seq TAB message-JSON``."""
    writer, seq, message = entry
    return f"{writer}\t{int(seq)}\t{message}".encode("utf-8", "surrogatepass")


def decode_log(raw: list[Any]) -> list[LogEntry]:
    """The entries of a turn-log LIST; ``ValueError`` when one is damaged."""
    entries: list[LogEntry] = []
    for line in raw:
        writer, seq, message = line.decode("utf-8", "surrogatepass").split("\t", 2)
        entries.append((writer, int(seq), message))
    return entries
