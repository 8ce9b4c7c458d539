"""The pure parts of compaction: what to fold, and what a summary may be.

``ConversationState`` owns the locking; these functions only look at values, so
they are tested and reasoned about without threads.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_agentmem.errors import InvalidMessageError, SummarizerError

from .policy import StatePolicy
from .sizing import check_text
from .summarize import Summarizer

log = logging.getLogger(__name__)

Message = dict[str, Any]


@dataclass(frozen=True)
class Fold:
    """A compaction in progress: which messages, on top of which summary and state."""

    summarizer: Summarizer
    k: int
    batch: list[Message]
    previous: str
    generation: int
    limit: int


@dataclass(frozen=True)
class Window:
    """The measurements of a recent window that the split point needs."""

    sizes: array[int]
    tokens: array[int]
    window_bytes: int
    window_tokens: int


def split_point(messages: list[Message], window: Window, policy: StatePolicy) -> int:
    """How many of the oldest messages to fold: enough to get under every target,
    then moved forward so the kept window does not start with a ``tool`` message."""
    keep = policy.keep_fraction
    max_count = max(1, math.floor(policy.max_recent * keep))
    max_bytes = policy.max_recent_bytes * keep
    max_tokens = None if policy.max_recent_tokens is None else policy.max_recent_tokens * keep
    n = len(messages)
    k = max(0, n - max_count)
    sizes = window.sizes
    window_bytes = window.window_bytes - sum(sizes[:k])
    while k < n and window_bytes > max_bytes:
        window_bytes -= sizes[k]
        k += 1
    if max_tokens is not None and window.tokens:
        tokens = window.tokens
        window_tokens = window.window_tokens - sum(tokens[:k])
        while k < n and window_tokens > max_tokens:
            window_tokens -= tokens[k]
            k += 1
    while k < n and messages[k].get("role") == "tool":
        k += 1
    return min(k, open_tool_group(messages))


def open_tool_group(messages: list[Message]) -> int:
    """Index of the last assistant message whose tool calls are not all answered yet
    (``len(messages)`` if none): folding it would orphan the results still to come."""
    answered: set[str] = set()
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "tool":
            answered.add(str(message.get("tool_call_id")))
        elif message.get("tool_calls"):
            calls = message["tool_calls"]
            ids = {str(c.get("id")) for c in calls if isinstance(c, dict)}
            return len(messages) if ids <= answered else index
        elif message.get("role") != "tool":
            break
    return len(messages)


def checked_summary(value: object) -> str:
    """A summarizer's result, or :class:`SummarizerError` when it is not storable text
    (a list, bytes, None, a lone surrogate): such a summary would corrupt the session."""
    if not isinstance(value, str):
        raise SummarizerError(
            f"the summarizer returned {type(value).__name__}, not str; messages kept"
        )
    try:
        check_text(value, "the summary")
    except InvalidMessageError as exc:
        raise SummarizerError(f"the summarizer returned unstorable text: {exc}") from None
    return value


def bounded(summary: str, summarizer: Summarizer, limit: int) -> str:
    """``summary`` within ``limit`` chars: re-summarised once, then cut in the middle."""
    if len(summary) <= limit:
        return summary
    try:
        summary = checked_summary(summarizer.summarize([], summary, limit))
    except Exception as exc:  # re-summarising is best effort; the cut below bounds it
        log.debug("re-summarising the summary failed: %s", exc)
    if len(summary) > limit:
        head = limit * 2 // 3
        summary = summary[: head - 4] + " ..." + summary[-(limit - head) :]
    return summary


def fold_failed(session_id: str, exc: BaseException, batch: Sequence[Message]) -> str:
    """Log a failed fold once and return the text kept in ``last_error``."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, SummarizerError):
        text = f"summarizer failed: {text}"
    log.warning(
        "session %r: summarizer failed, %d messages kept uncompacted: %s",
        session_id,
        len(batch),
        text,
    )
    return text
