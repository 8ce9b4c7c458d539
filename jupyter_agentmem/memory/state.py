"""One conversation's memory: a bounded running summary plus recent messages.

Why it stays small: every message is measured once when it is added
(``sizing.message_size``), so the session's byte estimate is kept up to date in
O(1); compaction triggers on message count, bytes *and* tokens, folds the
oldest messages into a summary that is itself bounded, and never separates an
assistant's ``tool_calls`` from the ``tool`` results that answer them.

A state may be owned by a :class:`~jupyter_agentmem.memory.manager.SessionManager`.
The manager can *evict* it: its content goes to a store and the object becomes
hollow. Any later use of the same object (``add_message``, ``get_context`` ...)
transparently restores it, so a reference held in a notebook variable never
swallows a message and never pins memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_agentmem.errors import InvalidMessageError, StoreCorruptError, SummarizerError

from .sizing import message_size, text_size
from .summarize import SUMMARY_PREFIX, Summarizer, message_text

if TYPE_CHECKING:
    from .truncate import ToolOutputTruncator

log = logging.getLogger(__name__)

Message = dict[str, Any]
FORMAT_VERSION = 1


class _Owner(Protocol):
    """What a state needs from the manager that owns it."""

    lock: threading.RLock

    def _account(self, state: ConversationState, delta: int) -> None: ...
    def _after_change(self) -> None: ...
    def _restore_into(self, state: ConversationState) -> None: ...
    def _note(self, counter: str, amount: int = 1) -> None: ...


@dataclass(frozen=True)
class StatePolicy:
    """Limits and helpers shared by many sessions (one object, not one per session).

    Compaction starts when the recent window passes ``max_recent`` messages,
    ``max_recent_bytes`` or ``max_recent_tokens`` and folds the oldest messages
    until the window is back under ``keep_fraction`` of each limit, so a busy
    session compacts every few turns rather than on every message.
    """

    max_recent: int = 10
    max_recent_bytes: int = 32 * 1024
    max_recent_tokens: int | None = None
    token_counter: Callable[[str], int] | None = None
    max_summary_chars: int = 2000
    keep_fraction: float = 0.5
    summarizer: Summarizer | None = None
    auto_compact: bool = True
    truncator: ToolOutputTruncator | None = None

    def __post_init__(self) -> None:
        if self.max_recent < 1:
            raise ValueError("max_recent must be at least 1")
        if self.max_recent_bytes < 1024:
            raise ValueError("max_recent_bytes must be at least 1024")
        if self.max_summary_chars < 100:
            raise ValueError("max_summary_chars must be at least 100")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError("keep_fraction must be in (0, 1]")
        if self.max_recent_tokens is not None and self.token_counter is None:
            raise ValueError("max_recent_tokens needs a token_counter, e.g. tiktoken's encode")

    def get_truncator(self) -> ToolOutputTruncator:
        if self.truncator is not None:
            return self.truncator
        return _default_truncator()


@functools.cache
def _default_truncator() -> ToolOutputTruncator:
    """One shared default truncator, imported lazily (it is only needed for tool results)."""
    from .truncate import ToolOutputTruncator

    return ToolOutputTruncator()


_DEFAULT_POLICY = StatePolicy()


@dataclass(frozen=True)
class _Fold:
    """A compaction in progress: which messages, on top of which summary and state."""

    summarizer: Summarizer
    k: int
    batch: list[Message]
    previous: str
    generation: int
    limit: int


class ConversationState:
    """Summary + recent messages of one session, with incremental byte accounting."""

    __slots__ = (
        "__weakref__",
        "_bytes",
        "_generation",
        "_lock",
        "_messages",
        "_owner",
        "_sizes",
        "_summary",
        "_tokens",
        "_window_bytes",
        "_window_tokens",
        "base_turns",
        "compactions",
        "created_at",
        "last_access",
        "last_error",
        "policy",
        "revision",
        "session_id",
        "total_turns",
        "truncated_bytes_saved",
    )

    def __init__(
        self,
        session_id: str,
        max_recent: int | None = None,
        *,
        max_recent_bytes: int | None = None,
        max_summary_chars: int | None = None,
        summarizer: Summarizer | None = None,
        policy: StatePolicy | None = None,
    ) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty str")
        base = policy or _DEFAULT_POLICY
        overrides: dict[str, Any] = {}
        if max_recent is not None:
            overrides["max_recent"] = max_recent
        if max_recent_bytes is not None:
            overrides["max_recent_bytes"] = max_recent_bytes
        if max_summary_chars is not None:
            overrides["max_summary_chars"] = max_summary_chars
        if summarizer is not None:
            overrides["summarizer"] = summarizer
        self.policy = StatePolicy(**{**base.__dict__, **overrides}) if overrides else base
        self.session_id = session_id
        self._summary = ""
        self._messages: list[Message] | None = []
        self._sizes = array("q")
        self._tokens = array("q")
        self._window_bytes = 0
        self._window_tokens = 0
        self.total_turns = 0
        self.compactions = 0
        self.truncated_bytes_saved = 0
        self.created_at = self.last_access = time.time()
        self.revision = 0
        self.base_turns = 0
        self.last_error: str | None = None
        self._generation = 0
        self._owner: _Owner | None = None
        self._lock: threading.RLock = threading.RLock()
        self._bytes = self._estimate()

    # ----------------------------------------------------------------- sizing
    def _estimate(self) -> int:
        """Heap estimate of this session, O(1): containers + message bytes + summary."""
        messages = self._messages
        if messages is None:
            return sys.getsizeof(self)
        return (
            sys.getsizeof(self)
            + sys.getsizeof(messages)
            + sys.getsizeof(self._sizes)
            + sys.getsizeof(self._tokens)
            + self._window_bytes
            + text_size(self._summary)
        )

    @property
    def memory_estimate_bytes(self) -> int:
        """Estimated heap bytes held by this session (0-cost read)."""
        return self._bytes

    @property
    def summary(self) -> str:
        """The running summary of the folded messages (restored first if evicted)."""
        with self._loaded():
            return self._summary

    @property
    def is_loaded(self) -> bool:
        """False while the session is evicted to the store (the object is hollow)."""
        return self._messages is not None

    # ------------------------------------------------------------- life cycle
    def _acquire(self) -> tuple[list[Message], threading.RLock]:
        """Take the lock of a loaded state, restoring it from the store first if it was
        evicted. Returns the window and the lock object to release."""
        while True:
            if self._messages is None and self._owner is not None:
                self._owner._restore_into(self)
            lock = self._lock
            lock.acquire()
            messages = self._messages
            if messages is not None and lock is self._lock:
                return messages, lock
            lock.release()
            if self._messages is None and self._owner is None:
                raise StoreCorruptError(f"session {self.session_id!r} is evicted and has no owner")

    @contextmanager
    def _loaded(self) -> Iterator[list[Message]]:
        """``with`` form of :meth:`_acquire`."""
        messages, lock = self._acquire()
        try:
            yield messages
        finally:
            lock.release()

    def _changed(self) -> None:
        """Re-measure after a mutation and tell the owner (call with the lock held)."""
        new = self._estimate()
        delta = new - self._bytes
        self._bytes = new
        if self._owner is not None:
            self._owner._account(self, delta)

    def _settle(self, auto_compact: bool = True) -> None:
        """Work that must run without the lock: inline compaction, then the owner's budget."""
        policy = self.policy
        summarizer = policy.summarizer
        if (
            auto_compact
            and summarizer is not None
            and summarizer.is_local
            and policy.auto_compact
            and self.needs_compaction()
        ):
            with contextlib.suppress(SummarizerError):  # recorded in last_error; messages stay
                self.compact(summarizer)
        if self._owner is not None:
            self._owner._after_change()

    # --------------------------------------------------------------- messages
    def add_message(self, message: Message) -> None:
        """Append one OpenAI-style message dict; it comes back equal from every accessor.

        The state takes the dict as it is (no copy): do not mutate it afterwards.
        Raises :class:`InvalidMessageError` if it is not JSON-shaped, because such a
        message could not be persisted when the session is evicted.
        """
        self._append([message], [message_size(message)])

    def add_messages(self, messages: Sequence[Message], *, auto_compact: bool = True) -> None:
        """Append several messages atomically (all validated first: a bad one adds nothing).

        ``auto_compact=False`` skips inline compaction for this call, for callers
        that compact with a model afterwards (the ``%%agent`` loop).
        """
        self._append(list(messages), [message_size(m) for m in messages], auto_compact)

    def record_truncation(self, saved_chars: int) -> None:
        """Count characters a truncator kept out of this session (shown by the dashboard)."""
        if saved_chars <= 0:
            return
        with self._lock:
            self.truncated_bytes_saved += saved_chars
        if self._owner is not None:
            self._owner._note("truncated_bytes_saved", saved_chars)

    def _append(self, batch: list[Message], sizes: list[int], auto_compact: bool = True) -> None:
        counter = self.policy.token_counter
        tokens = [counter(message_text(m)) for m in batch] if counter is not None else None
        window, lock = self._acquire()
        try:
            window.extend(batch)
            self._sizes.extend(sizes)
            self._window_bytes += sum(sizes)
            if tokens is not None:
                self._tokens.extend(tokens)
                self._window_tokens += sum(tokens)
            self.total_turns += len(batch)
            self.last_access = time.time()
            self._changed()
        finally:
            lock.release()
        self._settle(auto_compact)

    def add_tool_result(self, tool_call_id: str, output: Any, name: str | None = None) -> Message:
        """Truncate a tool's output (see ``ToolOutputTruncator``) and add it as a ``tool`` message.

        Truncating *before* storing is what keeps a 10 MB tool result from ever
        entering the session. Returns the stored message. The call must come
        first (the API rejects a ``tool`` message without it): raises
        :class:`InvalidMessageError` unless ``tool_call_id`` is an unanswered call
        of the last assistant message with ``tool_calls``.
        """
        self._require_open_call(tool_call_id)
        result = self.policy.get_truncator().truncate_ex(output)
        message: Message = {"role": "tool", "tool_call_id": tool_call_id, "content": result.text}
        if name:
            message["name"] = name
        self.add_message(message)
        self.record_truncation(result.saved_chars)
        return message

    def _require_open_call(self, tool_call_id: str) -> None:
        with self._loaded() as messages:
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

    @property
    def recent_messages(self) -> list[Message]:
        """The messages not yet folded into the summary (a new list of the same dicts)."""
        with self._loaded() as messages:
            return list(messages)

    def get_context(self) -> list[Message]:
        """What to send to the model: the summary as a system message, then recent messages.

        The window never starts with an orphan ``tool`` message, so the list is
        valid for the OpenAI chat API as it is.
        """
        with self._loaded() as messages:
            context: list[Message] = []
            if self._summary:
                context.append({"role": "system", "content": SUMMARY_PREFIX + self._summary})
            context.extend(messages)
            return context

    def __len__(self) -> int:
        """Number of recent (not yet summarised) messages."""
        with self._loaded() as messages:
            return len(messages)

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

    def _split_point(self, messages: list[Message]) -> int:
        """How many of the oldest messages to fold: enough to get under every target,
        then moved forward so the kept window does not start with a ``tool`` message."""
        policy = self.policy
        keep = policy.keep_fraction
        max_count = max(1, math.floor(policy.max_recent * keep))
        max_bytes = policy.max_recent_bytes * keep
        max_tokens = None if policy.max_recent_tokens is None else policy.max_recent_tokens * keep
        n = len(messages)
        k = max(0, n - max_count)
        window_bytes = self._window_bytes - sum(self._sizes[:k])
        while k < n and window_bytes > max_bytes:
            window_bytes -= self._sizes[k]
            k += 1
        if max_tokens is not None:
            window_tokens = self._window_tokens - sum(self._tokens[:k])
            while k < n and window_tokens > max_tokens:
                window_tokens -= self._tokens[k]
                k += 1
        while k < n and messages[k].get("role") == "tool":
            k += 1
        return min(k, _open_tool_group(messages))

    def _bounded(self, summary: str, summarizer: Summarizer) -> str:
        limit = self.policy.max_summary_chars
        if len(summary) <= limit:
            return summary
        try:
            summary = summarizer.summarize([], summary, limit)
        except Exception as exc:  # re-summarising is best effort; the cut below bounds it
            log.debug("re-summarising the summary failed: %s", exc)
        if len(summary) > limit:
            head = limit * 2 // 3
            summary = summary[: head - 4] + " ..." + summary[-(limit - head) :]
        return summary

    def _begin_compaction(self, summarizer: Summarizer | None) -> _Fold | None:
        """Pick the messages to fold (under the lock); None when there is nothing to do."""
        chosen = summarizer or self.policy.summarizer
        if chosen is None:
            raise SummarizerError("compaction needs a summarizer, e.g. ExtractiveSummarizer()")
        with self._loaded() as messages:
            k = self._split_point(messages)
            if k == 0:
                return None
            return _Fold(
                chosen,
                k,
                messages[:k],
                self._summary,
                self._generation,
                self.policy.max_summary_chars,
            )

    def _end_compaction(self, fold: _Fold, summary: str) -> bool:
        """Bound the new summary, apply it unless the state changed meanwhile."""
        try:
            summary = self._bounded(summary, fold.summarizer)
        except Exception as exc:
            raise self._failed(exc, fold.batch) from exc
        done = self._finish_compaction(fold.k, summary, fold.generation)
        if done and self._owner is not None:
            self._owner._after_change()
        return done

    def _finish_compaction(self, k: int, summary: str, generation: int) -> bool:
        with self._lock:
            if self._generation != generation or self._messages is None:
                return False  # evicted, restored or compacted meanwhile: try again later
            del self._messages[:k]
            folded = sum(self._sizes[:k])
            del self._sizes[:k]
            self._window_bytes -= folded
            if self._tokens:
                self._window_tokens -= sum(self._tokens[:k])
                del self._tokens[:k]
            self._summary = summary
            self.compactions += 1
            self.last_error = None
            self._generation += 1
            self._changed()
        if self._owner is not None:
            self._owner._note("compactions")
        return True

    def _failed(self, exc: Exception, batch: list[Message]) -> SummarizerError:
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "session %r: summarizer failed, %d messages kept uncompacted: %s",
            self.session_id,
            len(batch),
            self.last_error,
        )
        if isinstance(exc, SummarizerError):
            return exc
        return SummarizerError(f"summarizer failed, messages kept: {self.last_error}")

    def compact(self, summarizer: Summarizer | None = None) -> bool:
        """Fold the oldest messages into the summary; return whether anything was folded.

        The summarizer runs without any lock held (it may call a model). If it
        raises, nothing changes and :class:`SummarizerError` is raised.
        """
        fold = self._begin_compaction(summarizer)
        if fold is None:
            return False
        try:
            summary = fold.summarizer.summarize(fold.batch, fold.previous, fold.limit)
        except Exception as exc:
            raise self._failed(exc, fold.batch) from exc
        return self._end_compaction(fold, summary)

    async def acompact(self, summarizer: Summarizer | None = None) -> bool:
        """Async twin of :meth:`compact` (awaits ``summarizer.asummarize``)."""
        fold = self._begin_compaction(summarizer)
        if fold is None:
            return False
        try:
            summary = await fold.summarizer.asummarize(fold.batch, fold.previous, fold.limit)
        except Exception as exc:
            raise self._failed(exc, fold.batch) from exc
        return self._end_compaction(fold, summary)

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON document with everything needed to restore this session exactly."""
        with self._loaded() as messages:
            return self._document(messages)

    def _document(self, messages: list[Message]) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "session_id": self.session_id,
            "summary": self._summary,
            "messages": list(messages),
            "total_turns": self.total_turns,
            "compactions": self.compactions,
            "truncated_bytes_saved": self.truncated_bytes_saved,
            "created_at": self.created_at,
            "last_access": self.last_access,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], policy: StatePolicy | None = None
    ) -> ConversationState:
        """Rebuild a state from :meth:`to_dict` output; a damaged document raises
        :class:`StoreCorruptError` naming what is wrong."""
        session_id = data.get("session_id") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise StoreCorruptError("not a jupyter-agentmem session document (no session_id)")
        state = cls(session_id, policy=policy)
        state._fill(data)
        return state

    def _fill(self, data: dict[str, Any]) -> None:
        """Load a document into this object (the lock must be held or the object private)."""
        if data.get("format") != FORMAT_VERSION:
            raise StoreCorruptError(
                f"session {self.session_id!r}: unknown document format {data.get('format')!r}; "
                "was it written by a newer jupyter-agentmem?"
            )
        messages = data.get("messages")
        summary = data.get("summary", "")
        if not isinstance(messages, list) or not isinstance(summary, str):
            raise StoreCorruptError(f"session {self.session_id!r}: damaged messages or summary")
        try:
            sizes = array("q", (message_size(m) for m in messages))
        except InvalidMessageError as exc:
            raise StoreCorruptError(f"session {self.session_id!r}: {exc}") from exc
        counter = self.policy.token_counter
        self._messages = messages
        self._sizes = sizes
        self._window_bytes = sum(sizes)
        self._tokens = array("q")
        if counter is not None:
            self._tokens.extend(counter(message_text(m)) for m in messages)
        self._window_tokens = sum(self._tokens)
        self._summary = summary
        try:
            self.total_turns = int(data.get("total_turns", len(messages)))
            self.compactions = int(data.get("compactions", 0))
            self.truncated_bytes_saved = int(data.get("truncated_bytes_saved", 0))
            self.created_at = float(data.get("created_at", time.time()))
            self.last_access = float(data.get("last_access", self.created_at))
            self.revision = int(data.get("revision", 0))
        except (TypeError, ValueError) as exc:
            raise StoreCorruptError(f"session {self.session_id!r}: bad counter: {exc}") from exc
        self.base_turns = self.total_turns
        self._generation += 1
        self._changed()

    def _hollow(self) -> None:
        """Drop the content after it was saved (lock held); the next use restores it."""
        self._messages = None
        self._sizes = array("q")
        self._tokens = array("q")
        self._window_bytes = self._window_tokens = 0
        self._summary = ""
        self._generation += 1
        self._bytes = self._estimate()

    def __repr__(self) -> str:
        where = "in memory" if self._messages is not None else "evicted"
        count = len(self._messages) if self._messages is not None else "?"
        return (
            f"<ConversationState {self.session_id!r} {where}: {count} recent messages, "
            f"summary {len(self._summary)} chars, {self.total_turns} turns, ~{self._bytes:,} B>"
        )


def merge_documents(
    stored: dict[str, Any] | None, local: dict[str, Any], base_turns: int, max_summary_chars: int
) -> dict[str, Any]:
    """Merge a session changed here with the copy another process saved meanwhile.

    Semantics (documented in the README): the stored copy wins for everything it
    has; the messages this process added since it loaded (``total_turns -
    base_turns`` of them) are appended after the stored ones, so concurrent turns
    from two kernels are all kept, the other kernel's first. If some of those
    local messages were already folded into the local summary, that summary's
    tail is appended to the stored summary (bounded), so nothing is dropped
    silently.
    """
    added = max(0, int(local["total_turns"]) - base_turns)
    if stored is None:
        return dict(local, revision=1)
    local_messages: list[Message] = local["messages"]
    fresh = local_messages[-added:] if added else []
    merged = dict(stored)
    merged["messages"] = list(stored.get("messages", [])) + fresh
    merged["total_turns"] = int(stored.get("total_turns", 0)) + added
    merged["last_access"] = max(float(stored.get("last_access", 0)), float(local["last_access"]))
    merged["truncated_bytes_saved"] = max(
        int(stored.get("truncated_bytes_saved", 0)), int(local.get("truncated_bytes_saved", 0))
    )
    if added > len(local_messages) and local.get("summary"):
        note = "\n[merged from another kernel] " + str(local["summary"])
        merged["summary"] = (str(stored.get("summary", "")) + note)[-max_summary_chars:]
    merged["revision"] = int(stored.get("revision", 0)) + 1
    return merged


def _open_tool_group(messages: list[Message]) -> int:
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
