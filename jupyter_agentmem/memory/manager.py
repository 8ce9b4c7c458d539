"""The kernel's SessionManager: many conversations under one memory budget.

What it fixes in the naive design: byte accounting is incremental (each state
reports its own deltas, so nothing is re-summed), the session-count and byte
budgets are enforced after *every* public operation (including a state growing
through ``add_message``), evicted sessions are really written to a store and
come back transparently, one ``threading.RLock`` (shared with its states, see
``memory/state.py``) makes it safe from threads and asyncio alike, and no lock
is ever held across store I/O or a model call.

Faults it survives (``tests/test_faults.py``): a session stays in ``_live``
until its save has landed, so Ctrl-C at any store call leaves every session
listed and saved by ``close()``; a save whose outcome is unknown is recognised
by its write id (``memory/persist.py``), so it is never merged twice; store
writes and deletes are serialised by ``_io_lock``, so a delete wins over an
eviction in flight; one document a store rejects backs off alone, without
stalling the other sessions; and the session in use is never evicted to make
room, so one session larger than the budget stays usable (over budget, warned
once) instead of spinning between save and restore.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from jupyter_agentmem.errors import StoreCorruptError, StoreError
from jupyter_agentmem.stores.base import SessionStore

from . import defaults, persist
from .books import LiveSessions
from .document import Document
from .durable import TurnLog
from .eviction import Evictions
from .inspection import Inspection
from .owner import check_session_id
from .replay import load_with_log
from .sharing import Sharing
from .state import ConversationState, StatePolicy
from .stats import COUNTERS
from .summarize import ExtractiveSummarizer, Summarizer
from .tier import CompressedTier
from .tiering import Tiering

log = logging.getLogger(__name__)


def _check_limits(
    max_sessions: int, max_memory_bytes: int, tier_bytes: int, idle_timeout: float | None
) -> None:
    """Reject budgets a manager cannot keep, before it holds anything."""
    if max_sessions < 1:
        raise ValueError("max_sessions must be at least 1")
    if max_memory_bytes < defaults.MIN_MEMORY_BYTES:
        raise ValueError(
            f"max_memory_bytes must be at least {defaults.MIN_MEMORY_BYTES // 1024} KiB"
        )
    if tier_bytes < 0:
        raise ValueError("tier_bytes must be >= 0 bytes (0: no compressed tier)")
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError("idle_timeout must be positive seconds, or None to disable it")


def _policy(
    max_recent: int, max_recent_bytes: int, max_summary_chars: int, summarizer: Summarizer | None
) -> StatePolicy:
    """The policy of a manager built from the separate limits (no ``policy=``)."""
    return StatePolicy(
        max_recent=max_recent,
        max_recent_bytes=max_recent_bytes,
        max_summary_chars=max_summary_chars,
        summarizer=summarizer if summarizer is not None else ExtractiveSummarizer(),
    )


def _default_store() -> SessionStore:
    """The SQLite file in the Jupyter data directory (``store=None``)."""
    from jupyter_agentmem.stores import open_store

    return open_store(None)


class SessionManager(Evictions, Tiering, TurnLog, Inspection, Sharing):
    """LRU + idle eviction of ConversationStates to a store, under count and byte budgets.

    ``store=None`` uses the default SQLite file in the Jupyter data directory;
    pass ``MemoryStore()`` for a process-local manager or ``RedisStore`` to share
    sessions between kernels. ``summarizer`` compacts sessions inline when it is
    local (the default extractive one); with an LLM summarizer the caller (the
    ``%%agent`` loop) compacts after the answer is shown. ``durable_turns`` appends
    every message to the store's turn log in the background (``journal.py``), so a
    kernel killed with SIGKILL loses no finished turn; ``None`` (default) turns it
    on for stores that outlive the process (SQLite, Redis), not for ``MemoryStore``.
    ``tier_bytes > 0`` keeps evicted sessions compressed in memory up to that many
    bytes before the store (``memory/tiering.py``): for many idle sessions.
    With ``create_offline`` (servers), a session first used while the store is
    unreachable starts empty in memory instead of failing; its first save merges
    with any stored copy.
    """

    def __init__(
        self,
        max_sessions: int = defaults.MAX_SESSIONS,
        max_memory_bytes: int = defaults.MAX_MEMORY_BYTES,
        store: SessionStore | None = None,
        idle_timeout: float | None = None,
        *,
        max_recent: int = defaults.MAX_RECENT,
        max_recent_bytes: int = defaults.MAX_RECENT_BYTES,
        max_summary_chars: int = defaults.MAX_SUMMARY_CHARS,
        summarizer: Summarizer | None = None,
        policy: StatePolicy | None = None,
        retry_after: float = defaults.RETRY_AFTER,
        durable_turns: bool | None = None,
        tier_bytes: int = 0,
        create_offline: bool = False,
    ) -> None:
        _check_limits(max_sessions, max_memory_bytes, tier_bytes, idle_timeout)
        self.store = store = store if store is not None else _default_store()
        self.max_sessions = max_sessions
        self.max_memory_bytes = max_memory_bytes
        self.idle_timeout = idle_timeout
        self.policy = policy or _policy(max_recent, max_recent_bytes, max_summary_chars, summarizer)
        self.retry_after = retry_after
        self.create_offline = create_offline
        #: Counters of sharing a store between processes (not in ManagerStats, so the
        #: stats tables of notebooks and magics stay as they are).
        self.sharing = {"stale_reloads": 0, "offline_creates": 0}
        self.lock = threading.RLock()  # the StateOwner lock, shared with every state
        self._io_lock = threading.Lock()  # serialises store writes and deletes
        self._live = LiveSessions()
        #: StateOwner.resized (lock held): O(1) total update and LRU touch. The books'
        #: bound method itself, as every add calls it: no forwarding frame.
        self.resized: Callable[[ConversationState, int, int], None] = self._live.resized
        self._known: weakref.WeakValueDictionary[str, ConversationState] = (
            weakref.WeakValueDictionary()
        )
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._saving = 0
        self._deletions = 0  # bumped by delete: a restore that raced one loads again
        self._oversize_warned = False
        self._store_down_until = 0.0
        self.last_store_error: str | None = None
        self._closed = False
        self._tier = CompressedTier(tier_bytes) if tier_bytes > 0 else None
        self._spilling: set[str] = set()
        self.durable_turns = durable_turns
        self._writer: str | None = None  # this manager's name in turn logs, once it had one
        self.journal = self._journal_for(store)

    # ------------------------------------------------- StateOwner (state.py)
    # committed(): durable.py; resized(): the books' own method (see __init__)
    def restore(self, state: ConversationState) -> None:
        """A hollow state is being used: bring its content back (called without the lock)."""
        self._load(state.session_id, create=False)
        self.enforce_budget()

    # ---------------------------------------------------------------- access
    def get_or_create(self, session_id: str) -> ConversationState:
        """The session's state: live, restored from the store, or new and empty."""
        check_session_id(session_id)
        with self.lock:
            state = self._live.touch(session_id)
        if state is None:
            state = self._load(session_id, create=True)
        self.enforce_budget()
        return state

    async def aget_or_create(self, session_id: str) -> ConversationState:
        """Async twin of :meth:`get_or_create`; store I/O runs in a worker thread."""
        check_session_id(session_id)
        with self.lock:
            state = self._live.touch(session_id)
        if state is not None:
            return state
        return await asyncio.to_thread(self.get_or_create, session_id)

    def get(self, session_id: str) -> ConversationState | None:
        """Like :meth:`get_or_create` but ``None`` for an id that exists nowhere."""
        check_session_id(session_id)
        with self.lock:
            state = self._live.touch(session_id)
        if state is None:
            try:
                state = self._load(session_id, create=False)
            except KeyError:
                return None
        self.enforce_budget()
        return state

    def _load(self, sid: str, create: bool) -> ConversationState:
        """Load from the store outside the lock, then attach (unless someone was faster).
        A delete that ran meanwhile makes it load again, so a delete always wins."""
        self._check_open()
        state = self._tier_lookup(sid)
        if state is not None:
            return state
        for _ in range(5):
            deletions = self._deletions
            try:
                doc = load_with_log(self.store, sid)
            except StoreError:
                if not (create and self.create_offline) or sid in self._known:
                    raise
                doc = None  # new here, maybe not in the store: its save merges by revision
                with self.lock:
                    self.sharing["offline_creates"] += 1
            with self.lock:
                if self._deletions == deletions:
                    return self._attach(sid, doc, create)
        with self.lock:
            return self._attach(sid, load_with_log(self.store, sid), create)

    def _attach(self, sid: str, doc: Document | None, create: bool) -> ConversationState:
        state = self._live.touch(sid)
        if state is not None:
            return state
        state = self._known.get(sid)
        if doc is None and state is not None:
            raise StoreCorruptError(
                f"session {sid!r} was evicted but the store no longer has it "
                "(deleted by another process?)"
            )
        if doc is None and not create:
            raise KeyError(sid)
        if state is None:
            state = ConversationState(sid, policy=self.policy)
        if doc is not None:
            if doc.get("session_id") != sid:
                raise StoreCorruptError(f"store returned another session for {sid!r}")
            state.load_document(doc)
            self._counters["restores"] += 1
        state.attach(self)
        state.last_access = time.time()
        self._live.add(state)
        self._known[sid] = state
        return state

    def __contains__(self, session_id: object) -> bool:
        with self.lock:
            tier = self._tier
            if session_id in self._live or (tier is not None and session_id in tier):
                return True
            if session_id in self._spilling:  # being written from the tier right now
                return True
        try:
            sid = check_session_id(session_id)
        except ValueError:
            return False  # no store can hold it
        return load_with_log(self.store, sid) is not None

    # ------------------------------------------------------------ operations
    def evict(self, session_id: str) -> bool:
        """Write one live session to the store now and free its memory."""
        batch = self._evict_now(force=[session_id])
        return any(
            item.state.session_id == session_id and not item.state.is_loaded for item in batch
        )

    def evict_idle(self, seconds: float | None = None) -> int:
        """Evict sessions idle for ``seconds`` (default: ``idle_timeout``); return how many."""
        limit = self.idle_timeout if seconds is None else seconds
        if limit is None:
            return 0
        with self.lock:
            horizon = time.time() - limit
            idle = [sid for sid, st in self._live.states.items() if st.last_access <= horizon]
        if self._tier is not None:
            with self._io_lock:
                return sum(not s.is_loaded for s in self._evict_to_tier(force=idle))
        batch = self._evict_now(force=idle)
        return sum(1 for item in batch if not item.state.is_loaded)

    def compact_all(self) -> int:
        """Compact every live session that needs it; return how many were compacted."""
        with self.lock:
            states = list(self._live.states.values())
        summarizer = self.policy.summarizer or ExtractiveSummarizer()
        return sum(1 for st in states if st.needs_compaction() and st.compact(summarizer))

    def delete(self, session_id: str) -> bool:
        """Forget a session everywhere (memory and store); it wins over a save in flight.
        A held reference becomes a standalone state that no longer belongs to this manager."""
        check_session_id(session_id)
        if self.journal is not None:  # its queued turns must not land after the delete
            self.journal.forget(session_id)
        with self._io_lock:  # waits for an eviction writing this session
            with self.lock:
                state = self._live.remove(session_id)
                tiered = self._tier is not None and self._tier.discard(session_id)
                held = state or self._known.get(session_id)
                self._known.pop(session_id, None)
                if held is not None:
                    held.detach()
                self._deletions += 1
            removed = self.store.delete(session_id)
        return removed or state is not None or tiered

    def flush(self, ids: Iterable[str] | None = None) -> int:
        """Persist every live session (or those of ``ids``) without evicting it, and every
        session of the compressed tier (or those of ``ids``; they leave the tier)."""
        with self._io_lock:
            wanted = None if ids is None else list(ids)
            drained = self._drain_tier(wanted)
            with self.lock:
                live = self._live.states
                chosen = live.values() if wanted is None else (live.get(i) for i in wanted)
                items = [self._snapshot(s, evict=False) for s in chosen if s is not None]
            return drained + sum(
                self._write_all(items[i : i + 256]) for i in range(0, len(items), 256)
            )

    def update_policy(self, **changes: Any) -> StatePolicy:
        """Change compaction limits (``max_recent``, ``max_recent_bytes``, ...) for every
        session this manager knows, live or evicted, then apply the budgets."""
        with self.lock:
            old = self.policy
            self.policy = new = dataclasses.replace(old, **changes)
            for state in list(self._known.values()):
                if state.policy is old:
                    state.policy = new
        self.compact_all()
        self.enforce_budget()
        return new

    def replace_store(self, store: SessionStore, *, migrate: bool = True) -> int:
        """Move to another store (e.g. SQLite -> Redis) without losing a session.

        Every session persisted in the old store is copied (``migrate``),
        then live sessions are saved; where the new store already holds a session
        (another kernel's), both are merged like any conflicting save, so nothing
        from either side is lost. Running it again after an interruption merges
        nothing twice. The old store is closed. Returns how many were copied.
        """
        if store is self.store:
            return 0
        with self._io_lock:
            self._drain_tier()  # into the old store, then migrated with the rest
            old = self.store
            copied = 0
            if migrate:
                with self.lock:
                    live = set(self._live.states)
                merges = self.policy.max_summary_chars
                copied = persist.migrate(
                    old, store, live, merges, lambda: self.count("conflicts_merged")
                )
            if self.journal is not None:
                self.journal.close()  # drained into the old store, copied above
            with self.lock:
                self.store = store
                self.journal = self._journal_for(store)
                states = list(self._live.states.values())
                for state in states:  # nothing of them is in the new store yet
                    state.revision = state.base_total = 0
                    state.lineage, state.pending = "", ()
                self._store_down_until = 0.0
                self._live.backoff.clear()
                self.last_store_error = None
                items = [self._snapshot(state, evict=False) for state in states]
            try:
                for item in items:
                    self._write(item)
            finally:
                old.close()
        return copied

    def close(self) -> None:
        """Flush live sessions, close the store; idempotent."""
        if self._closed:
            return
        if self.journal is not None:
            self.journal.close()  # drain the log first: the flush below then compacts it
        self.flush()
        self._closed = True
        self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this SessionManager is closed; create a new one")

    def __len__(self) -> int:
        with self.lock:
            return len(self._live)

    def __repr__(self) -> str:
        return (
            f"<SessionManager {len(self._live)} live sessions, ~{self._live.nbytes:,} of "
            f"{self.max_memory_bytes:,} bytes, store={self.store!r}>"
        )
