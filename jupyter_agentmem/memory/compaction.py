"""The pure parts of compaction: what to fold, and what a summary may be.

``ConversationState`` owns the locking; these functions only look at values, so
they are tested and reasoned about without threads.
"""

from __future__ import annotations

import logging
import math
import threading
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from jupyter_agentmem.errors import InvalidMessageError, SummarizerError

from .owner import StateOwner
from .policy import StatePolicy
from .sizing import check_text
from .summarize import Summarizer

log = logging.getLogger(__name__)

Message = dict[str, Any]


class Fold(NamedTuple):
    """A compaction in progress: which messages, on top of which summary and state
    (a tuple: one is made per compaction, on the add path)."""

    summarizer: Summarizer
    k: int
    batch: list[Message]
    previous: str
    generation: int
    limit: int


class Window(NamedTuple):
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
    # Sizes are summed only for a window over its byte (token) target: one already
    # under it stays under as messages leave (sizes are never negative).
    if window.window_bytes > max_bytes:
        sizes = window.sizes
        window_bytes = window.window_bytes - sum(sizes[:k])
        while k < n and window_bytes > max_bytes:
            window_bytes -= sizes[k]
            k += 1
    if max_tokens is not None and window.tokens and window.window_tokens > max_tokens:
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


def require_open_call(messages: list[Message], tool_call_id: str) -> None:
    """Raise unless ``tool_call_id`` is an unanswered call of the last assistant message
    with ``tool_calls`` (the API rejects a ``tool`` message without its call)."""
    answered: set[object] = set()
    for message in reversed(messages):
        if message.get("role") == "tool":
            answered.add(message.get("tool_call_id"))
            continue
        calls = message.get("tool_calls") or ()
        if tool_call_id in {c.get("id") for c in calls if isinstance(c, dict)} - answered:
            return
        break
    raise InvalidMessageError(
        f"no unanswered tool call {tool_call_id!r} precedes this result: add the assistant "
        "message that requested it first, e.g. add_message({'role': 'assistant', 'content': "
        "None, 'tool_calls': [{'id': ..., 'type': 'function', 'function': {...}}]})"
    )


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


class Compacting:
    """The compaction half of ``ConversationState`` (one class, split across two
    modules so each has one job; the attributes are the state's own)."""

    # The window and summary live in these slots; ConversationState adds the rest.
    __slots__ = (
        "_generation",
        "_messages",
        "_sizes",
        "_summary",
        "_tokens",
        "_window_bytes",
        "_window_tokens",
        "compactions",
        "last_error",
    )
    _generation: int
    _messages: list[Message] | None
    _sizes: array[int]
    _summary: str
    _tokens: array[int]
    _window_bytes: int
    _window_tokens: int
    compactions: int
    last_error: str | None

    if TYPE_CHECKING:
        policy: StatePolicy
        session_id: str
        _lock: threading.RLock
        _owner: StateOwner[Any] | None

        def _acquire(self) -> tuple[list[Message], threading.RLock]: ...
        def _changed(self) -> None: ...

    # ------------------------------------------------------------- compaction
    def needs_compaction(self) -> bool:
        """True when the recent window is over its count, byte or token budget."""
        messages = self._messages
        if messages is None:
            return False
        policy = self.policy
        return (
            len(messages) > policy.max_recent
            or self._window_bytes > policy.max_recent_bytes
            or (
                policy.max_recent_tokens is not None
                and self._window_tokens > policy.max_recent_tokens
            )
        )

    def _begin_compaction(self, summarizer: Summarizer | None) -> Fold | None:
        """Pick the messages to fold (under the lock); None when there is nothing to do."""
        chosen = summarizer or self.policy.summarizer
        if chosen is None:
            raise SummarizerError("compaction needs a summarizer, e.g. ExtractiveSummarizer()")
        messages, lock = self._acquire()
        try:
            window = Window(self._sizes, self._tokens, self._window_bytes, self._window_tokens)
            k = split_point(messages, window, self.policy)
            if k == 0:
                return None
            limit = self.policy.max_summary_chars
            return Fold(chosen, k, messages[:k], self._summary, self._generation, limit)
        finally:
            lock.release()

    def _end_compaction(self, fold: Fold, result: object, settle: bool = True) -> bool:
        """Check and bound the new summary, apply it unless the state changed meanwhile;
        then count it and (unless the caller settles next anyway) apply the budgets."""
        try:
            summary = bounded(checked_summary(result), fold.summarizer, fold.limit)
        except Exception as exc:
            raise self._fold_failed(exc, fold.batch) from exc
        with self._lock:
            if self._generation != fold.generation or self._messages is None:
                return False  # evicted, restored or compacted meanwhile: try again later
            k = fold.k
            del self._messages[:k]
            self._window_bytes -= sum(self._sizes[:k])
            del self._sizes[:k]
            if self._tokens:
                self._window_tokens -= sum(self._tokens[:k])
                del self._tokens[:k]
            self._summary = summary
            self.compactions += 1
            self.last_error = None
            self._generation += 1
            self._changed()
        if self._owner is not None:
            self._owner.count("compactions", 1)
            if settle:
                self._owner.settle()
        return True

    def _fold_failed(self, exc: Exception, batch: list[Message]) -> SummarizerError:
        self.last_error = fold_failed(self.session_id, exc, batch)
        if isinstance(exc, SummarizerError):
            return exc
        return SummarizerError(f"summarizer failed, messages kept: {self.last_error}")

    def compact(self, summarizer: Summarizer | None = None) -> bool:
        """Fold the oldest messages into the summary; return whether anything was folded.

        The summarizer runs without any lock held (it may call a model). If it
        raises or returns something that is not storable text, nothing changes
        and :class:`SummarizerError` is raised.
        """
        return self._compact(summarizer, settle=True)

    def _compact(self, summarizer: Summarizer | None, settle: bool) -> bool:
        """:meth:`compact`; ``settle=False`` when the caller applies the budgets next."""
        fold = self._begin_compaction(summarizer)
        if fold is None:
            return False
        try:
            result: object = fold.summarizer.summarize(fold.batch, fold.previous, fold.limit)
        except Exception as exc:
            raise self._fold_failed(exc, fold.batch) from exc
        return self._end_compaction(fold, result, settle)

    async def acompact(self, summarizer: Summarizer | None = None) -> bool:
        """Async twin of :meth:`compact` (awaits ``summarizer.asummarize``)."""
        fold = self._begin_compaction(summarizer)
        if fold is None:
            return False
        try:
            result: object = await fold.summarizer.asummarize(fold.batch, fold.previous, fold.limit)
        except Exception as exc:
            raise self._fold_failed(exc, fold.batch) from exc
        return self._end_compaction(fold, result)
