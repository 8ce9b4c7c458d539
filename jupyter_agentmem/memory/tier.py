"""A compressed in-memory tier for idle sessions, between live objects and the store.

Why: a live 50-turn session costs ~16 KiB of Python objects, and most sessions
of a server or a hub are idle. Their JSON document compresses ~4-11x, and
decompressing it costs tens of microseconds, against a store round trip of
0.1-5 ms. So an idle session is first held here as one ``bytes`` object, and
only when this tier is over its own byte budget does its least recently used
entry go on to the store.

Format of an entry (private to this process, never persisted): raw deflate of a
4-byte length, a JSON skeleton of the document in which the long ``content``
strings and the summary are left out, then those strings as raw UTF-8.
Keeping long strings out of the JSON skips escaping on the way in and
unescaping on the way out, which halves the restore time of a session whose
tool results are themselves JSON text. Level 3 by default: ~40 % faster to
compress than level 6 for ~8 % more bytes on the benchmark session, and the
same on prose. Nothing is pickled.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyter_agentmem.errors import StoreCorruptError

SessionData = dict[str, Any]

MiB = 1024 * 1024
_LIFT_MIN = 64  # shorter strings stay in the skeleton: lifting them costs more than it saves
_HEAD = struct.Struct("<I")
_RAW = -15  # raw deflate: no header or checksum to verify (the bytes never leave this process)
# Per-entry bookkeeping outside the blob: the OrderedDict slot and links, the
# entry tuple, the int. The key str is measured separately.
_ENTRY_OVERHEAD = 160


def encode(doc: SessionData, level: int = 3) -> bytes:
    """Compress a session document (see the module docstring for the layout)."""
    texts: list[str] = []
    lifted: list[int] = []
    messages = []
    for index, message in enumerate(doc.get("messages", ())):
        content = message.get("content") if type(message) is dict else None
        if type(content) is str and len(content) >= _LIFT_MIN:
            message = dict(message, content=None)
            lifted.append(index)
            texts.append(content)
        messages.append(message)
    summary = doc.get("summary")
    skeleton = dict(doc, messages=messages)
    if type(summary) is str:
        skeleton["summary"] = None
        texts.append(summary)
    lengths = [len(t) for t in texts]
    head = json.dumps(
        [skeleton, lifted, lengths], ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8", "surrogatepass")
    body = "".join(texts).encode("utf-8", "surrogatepass")
    packer = zlib.compressobj(level, zlib.DEFLATED, _RAW)
    return packer.compress(_HEAD.pack(len(head)) + head + body) + packer.flush()


def decode(blob: bytes) -> SessionData:
    """The document :func:`encode` was given, equal to it."""
    try:
        raw = zlib.decompress(blob, _RAW)
        (size,) = _HEAD.unpack_from(raw)
        skeleton, lifted, lengths = json.loads(raw[4 : 4 + size])
        text = raw[4 + size :].decode("utf-8", "surrogatepass")
    except (zlib.error, struct.error, ValueError, TypeError) as exc:
        raise StoreCorruptError(f"a compressed session in memory is damaged: {exc}") from exc
    messages = skeleton["messages"]
    position = 0
    for index, length in zip(lifted, lengths, strict=False):  # summary: last
        end = position + length
        messages[index]["content"] = text[position:end]
        position = end
    if len(lengths) > len(lifted):
        skeleton["summary"] = text[position:]
    return skeleton  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Spilled:
    """An entry pushed out of the tier: the caller writes it to the store."""

    session_id: str
    doc: SessionData
    meta: object


class CompressedTier:
    """Idle session documents as compressed bytes, LRU within ``max_bytes``.

    ``put`` returns what no longer fits (least recently used first), already
    decoded, for the caller to write to its store; ``take`` removes and decodes
    one entry. ``meta`` travels with each entry untouched (the owner's save
    bookkeeping: revision, last confirmed save, writes in flight), so a session
    spilled later merges with another kernel's copy exactly as if it had never
    left memory. Thread-safe; no call does I/O.
    """

    def __init__(self, max_bytes: int = 64 * MiB, level: int = 3) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0 (0 turns the compressed tier off)")
        if not 0 <= level <= 9:
            raise ValueError("level must be a zlib level, 0..9")
        self.max_bytes = max_bytes
        self.level = level
        self._entries: OrderedDict[str, tuple[bytes, object]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _cost(session_id: str, blob: bytes) -> int:
        return sys.getsizeof(blob) + sys.getsizeof(session_id) + _ENTRY_OVERHEAD

    def put(self, session_id: str, doc: SessionData, meta: object = None) -> list[Spilled]:
        """Hold ``doc`` compressed (replacing any entry of the same id); return the spill."""
        blob = encode(doc, self.level)  # outside the lock: the costly part
        cost = self._cost(session_id, blob)
        spilled: list[tuple[str, bytes, object]] = []
        with self._lock:
            self._remove(session_id)
            if cost > self.max_bytes:
                spilled.append((session_id, blob, meta))
            else:
                self._entries[session_id] = (blob, meta)
                self._bytes += cost
                while self._bytes > self.max_bytes:
                    sid, (old, extra) = self._entries.popitem(last=False)
                    self._bytes -= self._cost(sid, old)
                    spilled.append((sid, old, extra))
        return [Spilled(sid, decode(old), extra) for sid, old, extra in spilled]

    def hold(self, session_id: str, doc: SessionData, meta: object = None) -> None:
        """Keep ``doc`` even over budget, as the next to spill: for a document the
        store could not take (it must not be lost, and it is retried first)."""
        blob = encode(doc, self.level)
        with self._lock:
            self._remove(session_id)
            self._entries[session_id] = (blob, meta)
            self._entries.move_to_end(session_id, last=False)
            self._bytes += self._cost(session_id, blob)

    def take(self, session_id: str) -> tuple[SessionData, object] | None:
        """Remove and return ``(document, meta)``, or None if not held here."""
        with self._lock:
            entry = self._remove(session_id)
        if entry is None:
            return None
        return decode(entry[0]), entry[1]

    def get(self, session_id: str) -> SessionData | None:
        """The document without removing it (for listing and flushing)."""
        with self._lock:
            entry = self._entries.get(session_id)
        return None if entry is None else decode(entry[0])

    def discard(self, session_id: str) -> bool:
        """Forget an entry; return whether there was one."""
        with self._lock:
            return self._remove(session_id) is not None

    def drain(self, session_ids: Iterable[str] | None = None) -> list[Spilled]:
        """Remove and return every entry (or those of ``session_ids``), least recently
        used first (shutdown, resize, a flush of some sessions)."""
        with self._lock:
            if session_ids is None:
                entries = list(self._entries.items())
                self._entries.clear()
                self._bytes = 0
            else:
                chosen = set(session_ids)
                entries = [(sid, e) for sid, e in self._entries.items() if sid in chosen]
                for sid, _ in entries:
                    self._remove(sid)
        return [Spilled(sid, decode(blob), meta) for sid, (blob, meta) in entries]

    def resize(self, max_bytes: int) -> list[Spilled]:
        """Change the budget; return the entries that no longer fit."""
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        spilled = []
        with self._lock:
            self.max_bytes = max_bytes
            while self._bytes > max_bytes:
                sid, (blob, meta) = self._entries.popitem(last=False)
                self._bytes -= self._cost(sid, blob)
                spilled.append((sid, blob, meta))
        return [Spilled(sid, decode(blob), meta) for sid, blob, meta in spilled]

    def _remove(self, session_id: str) -> tuple[bytes, object] | None:
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._bytes -= self._cost(session_id, entry[0])
        return entry

    def ids(self) -> list[str]:
        """Ids held here, least recently used first."""
        with self._lock:
            return list(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held, blobs and bookkeeping (what counts against ``max_bytes``)."""
        return self._bytes

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "sessions": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
            }

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"<CompressedTier {len(self._entries)} sessions, "
            f"{self._bytes:,} of {self.max_bytes:,} bytes>"
        )
