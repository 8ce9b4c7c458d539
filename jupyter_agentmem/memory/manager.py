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
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError
from jupyter_agentmem.stores.base import SessionStore

from . import defaults, persist
from .document import Document, field, new_write_id, with_write, writes_of
from .persist import Pending
from .state import ConversationState, StatePolicy, check_session_id
from .stats import COUNTERS, LargestSessions, ManagerStats, SessionInfo
from .summarize import ExtractiveSummarizer, Summarizer

log = logging.getLogger(__name__)

MiB = defaults.MiB
_PENDING_KEPT = 4  # unconfirmed writes remembered per session (bounded)


@dataclass(frozen=True)
class _Write:
    """One save in flight: the snapshot and what it was taken from."""

    state: ConversationState
    doc: Document
    version: tuple[int, int]
    turns: int  # messages_total of the snapshot
    base: int  # messages_total of the last save known to have landed
    pending: tuple[Pending, ...]
    evict: bool


def _size_of(state: ConversationState) -> int:
    return state.memory_estimate_bytes


class SessionManager:
    """LRU + idle eviction of ConversationStates to a store, under count and byte budgets.

    ``store=None`` uses the default SQLite file in the Jupyter data directory;
    pass ``MemoryStore()`` for a process-local manager or ``RedisStore`` to share
    sessions between kernels. ``summarizer`` compacts sessions inline when it is
    local (the default extractive one); with an LLM summarizer the caller (the
    ``%%agent`` loop) compacts after the answer is shown.
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
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if max_memory_bytes < defaults.MIN_MEMORY_BYTES:
            raise ValueError("max_memory_bytes must be at least 64 KiB")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive seconds, or None to disable it")
        if store is None:
            from jupyter_agentmem.stores import open_store

            store = open_store(None)
        self.store = store
        self.max_sessions = max_sessions
        self.max_memory_bytes = max_memory_bytes
        self.idle_timeout = idle_timeout
        self.policy = policy or StatePolicy(
            max_recent=max_recent,
            max_recent_bytes=max_recent_bytes,
            max_summary_chars=max_summary_chars,
            summarizer=summarizer if summarizer is not None else ExtractiveSummarizer(),
        )
        self.retry_after = retry_after
        self.lock = threading.RLock()  # the StateOwner lock, shared with every state
        self._io_lock = threading.Lock()  # serialises store writes and deletes
        self._live: OrderedDict[str, ConversationState] = OrderedDict()
        self._known: weakref.WeakValueDictionary[str, ConversationState] = (
            weakref.WeakValueDictionary()
        )
        self._bytes = 0
        self._largest: LargestSessions[ConversationState] = LargestSessions(_size_of)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._saving = 0
        self._deletions = 0  # bumped by delete: a restore that raced one loads again
        self._backoff: dict[str, float] = {}  # per-document failures (live ids only)
        self._oversize_warned = False
        self._store_down_until = 0.0
        self.last_store_error: str | None = None
        self._closed = False

    # ------------------------------------------------- StateOwner (state.py)
    def resized(self, state: ConversationState, delta: int) -> None:
        """A state changed size (lock held): O(1) total update and LRU touch."""
        sid = state.session_id
        if self._live.get(sid) is state:
            self._bytes += delta
            self._live.move_to_end(sid)
            self._largest.consider(sid, state)

    def committed(self, state: ConversationState, messages: Sequence[dict[str, Any]]) -> None:
        """Messages were appended (lock held). The hook for a durable per-turn log;
        the manager itself persists at eviction, flush and close."""

    def settle(self) -> None:
        self.enforce_budget()

    def restore(self, state: ConversationState) -> None:
        """A hollow state is being used: bring its content back (called without the lock)."""
        self._load(state.session_id, create=False)
        self.enforce_budget()

    def count(self, counter: str, amount: int = 1) -> None:
        with self.lock:
            self._counters[counter] += amount

    # ---------------------------------------------------------------- budget
    def enforce_budget(self) -> None:
        """Apply the count, byte and idle budgets now (runs after every operation)."""
        if not self._closed and self._over_budget():
            self._evict_now()

    def _over_budget(self) -> bool:
        """A cheap hint (the decision is re-made under the lock): is there work?"""
        live = self._live
        if len(live) > self.max_sessions or self._bytes > self.max_memory_bytes:
            if len(live) <= 1:  # the one session in use is never evicted to make room
                self._warn_oversized()
                return False
            return time.time() >= self._store_down_until
        self._oversize_warned = False
        if self.idle_timeout is None or not live:
            return False
        with self.lock:
            oldest = next(iter(live.values()), None)
            return oldest is not None and oldest.last_access <= time.time() - self.idle_timeout

    def _warn_oversized(self) -> None:
        with self.lock:
            if self._oversize_warned or self._bytes <= self.max_memory_bytes or not self._live:
                return
            self._oversize_warned = True
            self._counters["oversized_sessions"] += 1
            sid = next(reversed(self._live))
        log.warning(
            "session %r alone is larger than max_memory_bytes (%s > %s bytes): it stays in "
            "memory, over budget; raise max_memory_bytes or lower max_recent_bytes",
            sid,
            f"{self._bytes:,}",
            f"{self.max_memory_bytes:,}",
        )

    # -------------------------------------------------------------- eviction
    def _evict_now(self, force: Iterable[str] = ()) -> list[_Write]:
        """Snapshot and write victims; writes are serialised by ``_io_lock`` (never the
        main lock), so each snapshot carries the revision of the previous save."""
        with self._io_lock:
            batch = self._select_victims(force)
            for item in batch:
                self._write(item)
            return batch

    def _select_victims(self, force: Iterable[str]) -> list[_Write]:
        """Forced, idle, then LRU sessions until the budgets hold; the session in use
        (most recent) is never chosen to make room. Nothing leaves ``_live`` here."""
        with self.lock:
            now = time.time()
            if now < self._store_down_until:
                return []
            live = self._live
            chosen = {sid: live[sid] for sid in force if sid in live}
            if self.idle_timeout is not None:
                horizon = now - self.idle_timeout
                for sid, state in live.items():
                    if state.last_access > horizon:
                        break
                    chosen.setdefault(sid, state)
            count = len(live) - len(chosen)
            nbytes = self._bytes - sum(s.memory_estimate_bytes for s in chosen.values())
            in_use = next(reversed(live), None)
            for sid, state in live.items():
                if sid == in_use or (
                    count <= self.max_sessions and nbytes <= self.max_memory_bytes
                ):
                    break
                if sid not in chosen and self._backoff.get(sid, 0.0) <= now:
                    chosen[sid] = state
                    count -= 1
                    nbytes -= state.memory_estimate_bytes
            if count == 1 and nbytes > self.max_memory_bytes:
                self._warn_oversized()
            return [self._snapshot(state, evict=True) for state in chosen.values()]

    def _snapshot(self, state: ConversationState, evict: bool) -> _Write:
        """The document to save, stamped with a new write id (lock held)."""
        doc = state.to_dict()
        write_id = new_write_id()
        with_write(doc, doc["writes"], write_id)
        doc["revision"] = state.revision + 1
        turns = state.messages_total
        pending = (*state.pending, (write_id, turns))[-_PENDING_KEPT:]
        state.pending = pending  # until confirmed: it may land even if we never hear back
        self._saving += 1
        return _Write(state, doc, state.version, turns, state.base_total, pending, evict)

    def _write(self, item: _Write) -> bool:
        """Store I/O without the lock; a failure keeps the session in memory."""
        sid = item.state.session_id
        try:
            saved, _ = persist.save_merging(
                self.store,
                sid,
                item.doc,
                item.base,
                item.pending,
                self.policy.max_summary_chars,
                lambda: self.count("conflicts_merged"),
            )
        except Exception as exc:  # any backend failure: keep the data, warn once
            self._write_failed(item, exc)
            return False
        finally:
            with self.lock:
                self._saving -= 1
        with self.lock:
            self._written(item, saved)
        return True

    def _written(self, item: _Write, saved: Document) -> None:
        """Book a landed save (lock held): unload an unchanged victim, or take in
        the turns another writer added when the save had to merge."""
        state, sid = item.state, item.state.session_id
        if state.owner is not self:
            return  # deleted meanwhile
        merged = saved is not item.doc
        state.revision = int(saved["revision"])
        state.lineage = " ".join(writes_of(saved))
        state.pending = ()
        state.base_total = int(field(saved, "messages_total")) if merged else item.turns
        self._backoff.pop(sid, None)
        if item.evict and state.version == item.version and self._live.get(sid) is state:
            del self._live[sid]
            self._bytes -= state.memory_estimate_bytes
            self._largest.discard(sid)
            state.unload()
            self._counters["evictions"] += 1
        elif merged:
            state.rebase(saved, item.turns)

    def _write_failed(self, item: _Write, exc: Exception) -> None:
        """A store outage pauses all writes for ``retry_after``; a failure of this one
        document (it cannot be encoded, its stored copy is damaged, it kept
        conflicting) only backs this session off, so the others still evict."""
        sid = item.state.session_id
        outage = isinstance(exc, StoreError) and not isinstance(
            exc, (SessionConflictError, StoreCorruptError)
        )
        with self.lock:
            self._counters["persist_failures"] += 1
            first = self.last_store_error is None
            self.last_store_error = f"{type(exc).__name__}: {exc}"
            until = time.time() + self.retry_after
            if outage:
                self._store_down_until = until
            elif sid in self._live:
                self._backoff[sid] = until
        if first:
            log.warning(
                "could not persist session %r (%s); sessions stay in memory, over budget, "
                "and will be written when the store is back",
                sid,
                exc,
            )

    # ---------------------------------------------------------------- access
    def get_or_create(self, session_id: str) -> ConversationState:
        """The session's state: live, restored from the store, or new and empty."""
        check_session_id(session_id)
        with self.lock:
            state = self._touch(session_id)
        if state is None:
            state = self._load(session_id, create=True)
        self.enforce_budget()
        return state

    async def aget_or_create(self, session_id: str) -> ConversationState:
        """Async twin of :meth:`get_or_create`; store I/O runs in a worker thread."""
        check_session_id(session_id)
        with self.lock:
            state = self._touch(session_id)
        if state is not None:
            return state
        return await asyncio.to_thread(self.get_or_create, session_id)

    def get(self, session_id: str) -> ConversationState | None:
        """Like :meth:`get_or_create` but ``None`` for an id that exists nowhere."""
        with self.lock:
            state = self._touch(session_id)
        if state is None:
            try:
                state = self._load(session_id, create=False)
            except KeyError:
                return None
        self.enforce_budget()
        return state

    def _touch(self, sid: str) -> ConversationState | None:
        state = self._live.get(sid)
        if state is not None:
            self._live.move_to_end(sid)
            state.last_access = time.time()
        return state

    def _load(self, sid: str, create: bool) -> ConversationState:
        """Load from the store outside the lock, then attach (unless someone was faster).
        A delete that ran meanwhile makes it load again, so a delete always wins."""
        self._check_open()
        for _ in range(5):
            deletions = self._deletions
            doc = self.store.load(sid)
            with self.lock:
                if self._deletions == deletions:
                    return self._attach(sid, doc, create)
        with self.lock:
            return self._attach(sid, self.store.load(sid), create)

    def _attach(self, sid: str, doc: Document | None, create: bool) -> ConversationState:
        state = self._touch(sid)
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
        self._live[sid] = state
        self._known[sid] = state
        self._bytes += state.memory_estimate_bytes
        self._largest.consider(sid, state)
        return state

    def __contains__(self, session_id: object) -> bool:
        with self.lock:
            if session_id in self._live:
                return True
        return isinstance(session_id, str) and self.store.load(session_id) is not None

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
            idle = [sid for sid, st in self._live.items() if st.last_access <= horizon]
        batch = self._evict_now(force=idle)
        return sum(1 for item in batch if not item.state.is_loaded)

    def compact_all(self) -> int:
        """Compact every live session that needs it; return how many were compacted."""
        with self.lock:
            states = list(self._live.values())
        summarizer = self.policy.summarizer or ExtractiveSummarizer()
        return sum(1 for st in states if st.needs_compaction() and st.compact(summarizer))

    def delete(self, session_id: str) -> bool:
        """Forget a session everywhere (memory and store); it wins over a save in flight.
        A held reference becomes a standalone state that no longer belongs to this manager."""
        with self._io_lock:  # waits for an eviction writing this session
            with self.lock:
                state = self._live.pop(session_id, None)
                if state is not None:
                    self._bytes -= state.memory_estimate_bytes
                self._largest.discard(session_id)
                self._backoff.pop(session_id, None)
                held = state or self._known.get(session_id)
                self._known.pop(session_id, None)
                if held is not None:
                    held.detach()
                self._deletions += 1
            removed = self.store.delete(session_id)
        return removed or state is not None

    def flush(self) -> int:
        """Persist every live session without evicting it (used at shutdown)."""
        with self._io_lock:
            with self.lock:
                items = [self._snapshot(state, evict=False) for state in self._live.values()]
            return sum(self._write(item) for item in items)

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
            old = self.store
            copied = 0
            if migrate:
                with self.lock:
                    live = set(self._live)
                merges = self.policy.max_summary_chars
                copied = persist.migrate(
                    old, store, live, merges, lambda: self.count("conflicts_merged")
                )
            with self.lock:
                self.store = store
                for state in self._live.values():  # nothing of them is in the new store yet
                    state.revision = state.base_total = 0
                    state.lineage, state.pending = "", ()
                self._store_down_until = 0.0
                self._backoff.clear()
                self.last_store_error = None
                items = [self._snapshot(state, evict=False) for state in self._live.values()]
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
        self.flush()
        self._closed = True
        self.store.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this SessionManager is closed; create a new one")

    # ----------------------------------------------------------- inspection
    def stats(self) -> ManagerStats:
        """Counters and sizes; cheap enough for a dashboard tick."""
        with self.lock:
            counters = dict(self._counters)
            live, saving, nbytes = len(self._live), self._saving, self._bytes
            error = self.last_store_error
        persisted: int | None = None
        if time.time() >= self._store_down_until:  # do not wait on a store known to be down
            try:
                counter = getattr(self.store, "count", None)
                persisted = counter() if counter is not None else len(self.store.list_ids())
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        return ManagerStats(
            sessions_in_memory=live,
            sessions_saving=saving,
            estimated_bytes=nbytes,
            max_memory_bytes=self.max_memory_bytes,
            max_sessions=self.max_sessions,
            last_store_error=error,
            sessions_persisted=persisted,
            **counters,
        )

    def session_info(self, state: ConversationState) -> SessionInfo:
        """One row of the sessions table."""
        return state.info()

    def largest_sessions(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` largest live sessions (``SessionInfo`` fields); O(n + K), not O(sessions)."""
        with self.lock:
            return [s.info().as_dict() for s in self._largest.top(n, self._live)]

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every session, live ones first (``SessionInfo`` fields), then those only in
        the store (``session_id`` and ``in_memory``)."""
        with self.lock:
            live = [s.info().as_dict() for s in reversed(self._live.values())]
            seen = set(self._live)
        stored = [
            {"session_id": sid, "in_memory": False}
            for sid in self.store.list_ids()
            if sid not in seen
        ]
        return live + stored

    def live_ids(self) -> list[str]:
        """Ids of the sessions in memory, least recently used first."""
        with self.lock:
            return list(self._live)

    def __len__(self) -> int:
        with self.lock:
            return len(self._live)

    def __repr__(self) -> str:
        return (
            f"<SessionManager {len(self._live)} live sessions, ~{self._bytes:,} of "
            f"{self.max_memory_bytes:,} bytes, store={self.store!r}>"
        )
