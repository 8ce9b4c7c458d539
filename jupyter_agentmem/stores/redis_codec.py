"""The value format of :mod:`.redis`: one format byte, then JSON (maybe zlib-packed).

``j`` is plain UTF-8 JSON, ``z`` zlib-compressed JSON, so a stored value says
how to read it and nothing is ever pickled. Errors come back as ``ValueError``
with the reason; the store names the session and raises its own error.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from .base import LogEntry, SessionData

__all__ = ["decode", "decode_log", "encode", "encode_log"]

_JSON, _ZLIB = b"j", b"z"
_ZLIB_LEVEL = 6


def encode(data: SessionData, compress_threshold: int) -> bytes:
    """``data`` as a stored value; zlib only above the threshold and only when smaller.

    Raises ``TypeError``/``ValueError`` when ``data`` is not a JSON document.
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > compress_threshold:
        packed = zlib.compress(raw, _ZLIB_LEVEL)
        if len(packed) < len(raw):
            return _ZLIB + packed
    return _JSON + raw


def decode(rev: Any, blob: bytes) -> Any:
    """The JSON value of ``blob`` and the stored revision; ``ValueError`` when damaged."""
    try:
        head, body = blob[:1], blob[1:]
        if head == _ZLIB:
            body = zlib.decompress(body)
        elif head != _JSON:
            raise ValueError(f"unknown format byte {head!r}")
        return json.loads(body.decode("utf-8", "surrogatepass")), int(rev)
    except (TypeError, zlib.error) as exc:  # JSON and UTF-8 errors are ValueErrors already
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
