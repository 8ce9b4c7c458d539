"""Cutting text and bytes at the edges without splitting a character.

Why a module of its own: the truncator keeps the head and the tail of a long
text or blob, and a cut in the middle of a surrogate pair or a UTF-8 sequence
would write a character that was never there (or text no store can write).
These four cuts are all it needs; they read at most ``k`` chars (bytes).
"""

from __future__ import annotations

__all__ = ["bytes_head", "bytes_tail", "clip_head", "clip_tail"]


def clip_head(s: str, k: int) -> str:
    """First ``k`` chars, not ending on the first half of a surrogate pair."""
    h = s[: max(k, 0)]
    return h[:-1] if h and "\ud800" <= h[-1] <= "\udbff" else h


def clip_tail(s: str, k: int) -> str:
    """Last ``k`` chars, not starting on the second half of a surrogate pair."""
    t = s[len(s) - k :] if k > 0 else ""
    return t[1:] if t and "\udc00" <= t[0] <= "\udfff" else t


def bytes_head(b: bytes | bytearray, k: int) -> str:
    """Decode the first ~``k`` bytes (at most ``k`` chars), cut on a UTF-8 boundary."""
    if k < len(b):
        for _ in range(3):
            k -= 1 if k > 0 and b[k] & 0xC0 == 0x80 else 0
        b = b[:k]
    return b.decode("utf-8-sig", "replace")


def bytes_tail(b: bytes | bytearray, k: int) -> str:
    """Decode the last ~``k`` bytes (at most ``k`` chars), cut on a UTF-8 boundary."""
    start = max(len(b) - k, 0)
    for _ in range(3):
        start += 1 if start < len(b) and b[start] & 0xC0 == 0x80 else 0
    return b[start:].decode("utf-8", "replace")
