"""One conversation's memory: a bounded running summary plus recent messages.

Why it stays small: every message is measured once when it is added
(``sizing.message_size``), so the session's byte estimate is kept up to date in
O(1); compaction triggers on message count, bytes *and* tokens, folds the
oldest messages into a summary that is itself bounded, and never separates an
assistant's ``tool_calls`` from the ``tool`` results that answer them.

State and owner. A state is a value that may have one owner (a
:class:`~jupyter_agentmem.memory.manager.SessionManager`) behind the small
:class:`~jupyter_agentmem.memory.owner.StateOwner` protocol; ``owner.py`` also
tells the lock story. The owner can *evict* a state: its content goes to a
store and the object becomes hollow (:meth:`ConversationState.unload`). Any
later use of the same object transparently asks the owner to restore it, so a
reference held in a notebook variable never swallows a message and never pins
memory.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from jupyter_agentmem.errors import StoreCorruptError, SummarizerError
from jupyter_agentmem.vocabulary import SUMMARY_PREFIX

from .compaction import require_open_call
from .document import FORMAT_VERSION, Document, merge_documents
from .owner import StateOwner, check_session_id
from .persisting import NO_PENDING, Persisting
from .policy import DEFAULT_POLICY, StatePolicy
from .sizing import ARRAY_EXTRA, GC_HEADER, escape_surrogates, message_size
from .stats import SessionInfo
from .summarize import Summarizer

__all__ = ["FORMAT_VERSION", "ConversationState", "StateOwner", "StatePolicy", "merge_documents"]

Message = dict[str, Any]

_object_sizeof = object.__sizeof__
_list_sizeof = list.__sizeof__
_array_sizeof = array.__sizeof__
_str_sizeof = str.__sizeof__
# What sys.getsizeof adds to those for the state, its list and its two arrays (GC headers).
_FIXED_EXTRA = 2 * GC_HEADER + 2 * ARRAY_EXTRA


class ConversationState(Persisting):
    """Summary + recent messages of one session, with incremental byte accounting.

    ``messages_total`` counts every message ever added, ``turns`` the user
    messages among them. ``revision``, ``base_total``, ``lineage`` and
    ``pending`` are the owner's save bookkeeping (see ``memory/document.py``).
    """

    __slots__ = ("__weakref__", "_lock", "_owner", "policy", "session_id")

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
        self.session_id = check_session_id(session_id)
        self.policy = (policy or DEFAULT_POLICY).with_overrides(
            max_recent=max_recent,
            max_recent_bytes=max_recent_bytes,
            max_summary_chars=max_summary_chars,
            summarizer=summarizer,
        )
        self._summary = ""
        self._messages: list[Message] | None = []
        self._sizes = array("q")
        self._tokens = array("q")
        self._window_bytes = self._window_tokens = 0
        self.messages_total = self.turns = self.compactions = self.truncated_chars_saved = 0
        self.created_at = self.last_access = time.time()
        self.revision = self.base_total = 0
        self.lineage = ""
        self.log_marks = {}  # turn-log numbers this content covers
        self.pending = NO_PENDING
        self.last_error: str | None = None
        self._generation = 0
        self._owner: StateOwner[ConversationState] | None = None
        self._lock: threading.RLock = threading.RLock()
        self._bytes = self._estimate()

    # ------------------------------------------------------------- ownership
    def attach(self, owner: StateOwner[ConversationState]) -> None:
        """Belong to ``owner`` and share its lock (call with ``owner.lock`` held)."""
        self._owner = owner
        self._lock = owner.lock

    def detach(self) -> None:
        """Stop belonging to the owner: a standalone state with a lock of its own."""
        self._owner = None
        self._lock = threading.RLock()

    @property
    def owner(self) -> StateOwner[ConversationState] | None:
        return self._owner

    @property
    def lock(self) -> threading.RLock:
        """The lock guarding this state's content (its owner's when attached)."""
        return self._lock

    @property
    def version(self) -> tuple[int, int]:
        """Changes with every append, compaction, load or unload: a save that saw
        this version may unload the state only if it is still the same."""
        return self._generation, self.messages_total

    # ----------------------------------------------------------------- sizing
    def _estimate(self) -> int:
        """Heap estimate of this session, O(1): containers + message bytes + summary
        (``sys.getsizeof`` of each, by the types' own ``__sizeof__``: no lookups)."""
        messages = self._messages
        if messages is None:
            return _object_sizeof(self) + GC_HEADER
        return (
            _object_sizeof(self)
            + _list_sizeof(messages)
            + _array_sizeof(self._sizes)
            + _array_sizeof(self._tokens)
            + _FIXED_EXTRA
            + self._window_bytes
            + _str_sizeof(self._summary)
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

    @property
    def total_turns(self) -> int:
        """Deprecated name of :attr:`messages_total` (it always counted messages)."""
        return self.messages_total

    @property
    def user_turns(self) -> int:
        """Another name of :attr:`turns` (user messages)."""
        return self.turns

    @property
    def truncated_bytes_saved(self) -> int:
        """Deprecated name of :attr:`truncated_chars_saved` (it always counted chars)."""
        return self.truncated_chars_saved

    # ------------------------------------------------------------- life cycle
    def _acquire(self) -> tuple[list[Message], threading.RLock]:
        """Take the lock of a loaded state, restoring it from the store first if it was
        evicted. Returns the window and the lock object to release."""
        while True:
            owner = self._owner
            if self._messages is None and owner is not None:
                owner.restore(self)
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
            self._owner.resized(self, delta, new)

    def _settle(self, over: bool) -> None:
        """Work that must run without the lock: inline compaction when the window was
        ``over`` its budget after the change, then the owner's budget."""
        if over:
            policy = self.policy
            summarizer = policy.summarizer
            if summarizer is not None and summarizer.is_local and policy.auto_compact:
                # try/except, not contextlib.suppress: its __enter__ and __exit__ are
                # Python calls, ~0.4 us per compaction
                try:  # noqa: SIM105
                    self._compact(summarizer, settle=False)  # settled just below
                except SummarizerError:
                    pass  # in last_error; the messages stay
        if self._owner is not None:
            self._owner.settle()

    # --------------------------------------------------------------- messages
    def add_message(self, message: Message) -> None:
        """Append one OpenAI-style message dict; it comes back equal from every accessor.

        The state takes the dict as it is (no copy): do not mutate it afterwards.
        Raises :class:`InvalidMessageError` if it is not JSON-shaped or holds text
        no store can write (lone surrogates, giant ints): such a message could not
        be persisted when the session is evicted. Nothing is added then.
        """
        size = message_size(message)
        policy = self.policy
        if policy.token_counter is not None:
            self._append([message], [size])
            return
        window, lock = self._acquire()  # _append of one message, with its calls inlined
        try:
            window.append(message)
            self._sizes.append(size)
            self._window_bytes += size
            self.messages_total += 1
            if message.get("role") == "user":
                self.turns += 1
            self.last_access = time.time()
            new = self._estimate()  # _changed()
            delta = new - self._bytes
            self._bytes = new
            owner = self._owner
            if owner is not None:
                owner.resized(self, delta, new)
                owner.committed(self, [message])
            # needs_compaction(), inlined: without a token counter there is no token budget
            over = len(window) > policy.max_recent or self._window_bytes > policy.max_recent_bytes
        finally:
            lock.release()
        if over:
            self._settle(True)
        elif self._owner is not None:
            self._owner.settle()

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
            self.truncated_chars_saved += saved_chars
        if self._owner is not None:
            self._owner.count("truncated_chars_saved", saved_chars)

    def _append(self, batch: list[Message], sizes: list[int], auto_compact: bool = True) -> None:
        policy = self.policy  # token counts are checked before anything changes
        tokens = policy.count_tokens(batch) if policy.token_counter is not None else None
        users = 0
        for message in batch:
            if message.get("role") == "user":
                users += 1
        window, lock = self._acquire()
        try:
            window.extend(batch)
            self._sizes.extend(sizes)
            self._window_bytes += sum(sizes)
            if tokens is not None:
                self._tokens.extend(tokens)
                self._window_tokens += sum(tokens)
            self.messages_total += len(batch)
            self.turns += users
            self.last_access = time.time()
            self._changed()
            if self._owner is not None:
                self._owner.committed(self, batch)
            over = auto_compact and self.needs_compaction()
        finally:
            lock.release()
        self._settle(over)

    def add_tool_result(self, tool_call_id: str, output: Any, name: str | None = None) -> Message:
        """Truncate a tool's output (see ``ToolOutputTruncator``) and add it as a ``tool`` message.

        Truncating *before* storing is what keeps a 10 MB tool result from ever
        entering the session. Text no store could write (file names that are not
        UTF-8) is kept with each lone surrogate escaped as ``\\udcff``. Returns the
        stored message. The call must come first (the API rejects a ``tool``
        message without it): raises :class:`InvalidMessageError` unless
        ``tool_call_id`` is an unanswered call of the last assistant message.
        """
        with self._loaded() as messages:
            require_open_call(messages, tool_call_id)
        result = self.policy.get_truncator().truncate_ex(output)
        text = escape_surrogates(result.text)
        message: Message = {"role": "tool", "tool_call_id": tool_call_id, "content": text}
        if name:
            message["name"] = name
        self.add_message(message)
        self.record_truncation(result.saved_chars)
        return message

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

    @classmethod
    def from_dict(cls, data: Document, policy: StatePolicy | None = None) -> ConversationState:
        """Rebuild a state from :meth:`to_dict` output; a damaged document raises
        :class:`StoreCorruptError` naming what is wrong."""
        session_id = data.get("session_id") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise StoreCorruptError("not a jupyter-agentmem session document (no session_id)")
        state = cls(session_id, policy=policy)
        state.load_document(data)
        return state

    def info(self) -> SessionInfo:
        """One row of the sessions table (no restore: an evicted state says so)."""
        with self._lock:
            messages = self._messages
            return SessionInfo(
                session_id=self.session_id,
                in_memory=messages is not None,
                messages=len(messages) if messages is not None else None,
                summary_chars=len(self._summary),
                messages_total=self.messages_total,
                turns=self.turns,
                compactions=self.compactions,
                estimated_bytes=self._bytes,
                last_access=self.last_access,
            )

    def __repr__(self) -> str:
        where = "in memory" if self._messages is not None else "evicted"
        count = len(self._messages) if self._messages is not None else "?"
        return (
            f"<ConversationState {self.session_id!r} {where}: {count} recent messages, "
            f"summary {len(self._summary)} chars, {self.turns} turns "
            f"({self.messages_total} messages), ~{self._bytes:,} B>"
        )
