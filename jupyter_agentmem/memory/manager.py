"""The kernel's SessionManager: many conversations under one memory budget.

What it fixes in the naive design: byte accounting is incremental (each state
reports its own deltas, so nothing is re-summed), the session-count and byte
budgets are enforced after *every* public operation (including a state growing
through ``add_message``), evicted sessions are really written to a store and
come back transparently, one ``threading.RLock`` makes it safe from threads and
asyncio alike, and no lock is ever held across store I/O or a model call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError
from jupyter_agentmem.stores.base import SessionData, SessionStore

from .journal import Journal, load_document, supports_log
from .state import ConversationState, Message, StatePolicy, count_user_turns, merge_documents
from .summarize import ExtractiveSummarizer, Summarizer

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_CONFLICT_RETRIES = 12
_COUNTERS = (
    "evictions",
    "restores",
    "compactions",
    "truncated_bytes_saved",
    "persist_failures",
    "conflicts_merged",
)


class _Largest:
    """The largest live sessions, kept incrementally so a dashboard tick is O(K), not O(n).

    Invariant: every live session that is not a candidate has at most ``floor``
    bytes. A session that grows past the floor becomes a candidate (O(1)); the
    candidates are trimmed back to ``K`` when they reach ``2K``, raising the
    floor. Only when fewer candidates remain than asked for is there a full scan.
    """

    K = 64

    def __init__(self) -> None:
        self.members: dict[str, ConversationState] = {}
        self.floor = 0

    def consider(self, state: ConversationState) -> None:
        size = state.memory_estimate_bytes
        if size > self.floor:
            self.members[state.session_id] = state
            if len(self.members) >= 2 * self.K:
                kept = heapq.nlargest(self.K, self.members.values(), key=_size_of)
                self.members = {s.session_id: s for s in kept}
                self.floor = max(self.floor, kept[-1].memory_estimate_bytes)
        elif state.session_id in self.members:
            del self.members[state.session_id]  # shrank below the floor: the invariant holds

    def discard(self, session_id: str) -> None:
        self.members.pop(session_id, None)

    def top(self, n: int, live: dict[str, ConversationState]) -> list[ConversationState]:
        members = [s for sid, s in self.members.items() if live.get(sid) is s]
        if len(members) < min(n, len(live)):
            kept = heapq.nlargest(max(n, self.K), live.values(), key=_size_of)
            self.members = {s.session_id: s for s in kept}
            self.floor = kept[-1].memory_estimate_bytes if len(live) > len(kept) else 0
            members = kept
        return heapq.nlargest(n, members, key=_size_of)


def _size_of(state: ConversationState) -> int:
    return state.memory_estimate_bytes


@dataclass
class _Eviction:
    state: ConversationState
    doc: SessionData
    turns: int


class SessionManager:
    """LRU + idle eviction of ConversationStates to a store, under count and byte budgets.

    ``store=None`` uses the default SQLite file in the Jupyter data directory;
    pass ``MemoryStore()`` for a process-local manager or ``RedisStore`` to share
    sessions between kernels. ``summarizer`` compacts sessions inline when it is
    local (the default extractive one); with an LLM summarizer the caller (the
    ``%%agent`` loop) compacts after the answer is shown. ``durable_turns`` appends
    every message to the store's turn log in the background (``journal.py``), so a
    kernel killed with SIGKILL loses no finished turn; ``None`` (default) turns it
    on for stores that outlive the process (SQLite, Redis), not for ``MemoryStore``.
    """

    def __init__(
        self,
        max_sessions: int = 1000,
        max_memory_bytes: int = 500 * MiB,
        store: SessionStore | None = None,
        idle_timeout: float | None = None,
        *,
        max_recent: int = 10,
        max_recent_bytes: int = 32 * 1024,
        max_summary_chars: int = 2000,
        summarizer: Summarizer | None = None,
        policy: StatePolicy | None = None,
        retry_after: float = 5.0,
        durable_turns: bool | None = None,
    ) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        if max_memory_bytes < 64 * 1024:
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
        self.lock = threading.RLock()
        self._io_lock = threading.Lock()
        self._live: OrderedDict[str, ConversationState] = OrderedDict()
        self._evicting: dict[str, ConversationState] = {}
        self._known: weakref.WeakValueDictionary[str, ConversationState] = (
            weakref.WeakValueDictionary()
        )
        self._bytes = 0
        self._largest = _Largest()
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._store_down_until = 0.0
        self.last_store_error: str | None = None
        self._closed = False
        self.durable_turns = durable_turns
        self._writer: str | None = None  # this manager's name in turn logs, once it had one
        self.journal = self._journal_for(store)

    # ------------------------------------------------------------ accounting
    def _account(self, state: ConversationState, delta: int) -> None:
        """A state changed size (lock held): O(1) total update and LRU touch."""
        sid = state.session_id
        if self._live.get(sid) is state:
            self._bytes += delta
            self._live.move_to_end(sid)
        elif self._evicting.get(sid) is state:
            # Changed while being saved: it stays in memory, the save will not hollow it.
            del self._evicting[sid]
            self._live[sid] = state
            self._bytes += state.memory_estimate_bytes
        else:
            return
        self._largest.consider(state)

    def _journal_for(self, store: SessionStore) -> Journal | None:
        durable = self.durable_turns
        if durable is None:
            durable = bool(getattr(store, "persistent", True))
        if not (durable and supports_log(store)):
            return None
        journal = Journal(store, self, writer=self._writer)
        self._writer = journal.writer
        return journal

    def set_durable_turns(self, durable: bool | None) -> None:
        """Turn the turn log on (``True``; ``None``: if the store outlives the process) or
        off (``False``, for throw-away work: only evictions and flushes save).

        Switching it on saves live sessions whole first, so that every message added
        since a session's last save is numbered (the merge of concurrent kernels
        relies on it); switched off, messages are still numbered, not logged."""
        with self._io_lock:
            old, self.durable_turns = self.journal, durable
            with self.lock:
                self.journal = None
            if old is not None:
                old.close()  # drains what is queued
            elif self._writer is None:
                self._flush()
            journal = self._journal_for(self.store)
            with self.lock:
                self.journal = journal

    def _appended(self, state: ConversationState, batch: list[Message]) -> None:
        """Messages were added (state lock held): queue them for the turn log."""
        if self.journal is not None:
            self.journal.record(state, batch)
        elif self._writer is not None:  # logging off for now: keep numbering them
            marks = state.log_marks
            marks[self._writer] = marks.get(self._writer, 0) + len(batch)

    def _snapshot(self, state: ConversationState) -> _Eviction:
        """A whole-session document to save (lock held); it covers the turn log so far."""
        doc = state.to_dict()
        doc["revision"] = state.revision + 1
        if self.journal is not None:
            self.journal.snapshotted(state.session_id)
        return _Eviction(state, doc, state.total_turns)

    def sync_log(self, timeout: float | None = 0.2) -> bool:
        """Wait until every message added so far is in the store's turn log."""
        return self.journal is None or self.journal.sync(timeout)

    def _note(self, counter: str, amount: int = 1) -> None:
        with self.lock:
            self._counters[counter] += amount

    def _over_budget(self) -> bool:
        """A lock-free hint (the decision is re-made under the lock): is there work?"""
        live = self._live
        if len(live) > self.max_sessions or self._bytes > self.max_memory_bytes:
            return time.time() >= self._store_down_until
        if self.idle_timeout is None or not live:
            return False
        with self.lock:
            oldest = next(iter(live.values()), None)
            return oldest is not None and oldest.last_access <= time.time() - self.idle_timeout

    def _after_change(self) -> None:
        """Restore the invariants (count, bytes, idle) after any operation."""
        if self._closed or not self._over_budget():
            return
        self._evict_now()

    def _evict_now(self, force: Iterable[str] = ()) -> list[_Eviction]:
        """Snapshot and write victims. Writes are serialised by ``_io_lock`` (never the
        main lock), so each snapshot carries the revision of the previous save."""
        with self._io_lock:
            batch = self._select_victims(force)
            if batch:
                self._write_out(batch)
            return batch

    # -------------------------------------------------------------- eviction
    def _select_victims(self, force: Iterable[str] = ()) -> list[_Eviction]:
        with self.lock:
            now = time.time()
            if now < self._store_down_until:
                return []
            chosen: list[ConversationState] = [
                self._live[sid] for sid in force if sid in self._live
            ]
            for state in chosen:
                del self._live[state.session_id]
                self._bytes -= state.memory_estimate_bytes
                self._largest.discard(state.session_id)
            if self.idle_timeout is not None:
                horizon = now - self.idle_timeout
                while self._live:
                    state = next(iter(self._live.values()))
                    if state.last_access > horizon:
                        break
                    chosen.append(self._pop_lru())
            while self._live and (
                len(self._live) > self.max_sessions or self._bytes > self.max_memory_bytes
            ):
                chosen.append(self._pop_lru())
            batch = []
            for state in chosen:
                self._evicting[state.session_id] = state
                batch.append(self._snapshot(state))
            return batch

    def _pop_lru(self) -> ConversationState:
        sid, state = self._live.popitem(last=False)
        self._bytes -= state.memory_estimate_bytes
        self._largest.discard(sid)
        return state

    def _save(self, sid: str, doc: SessionData, base_turns: int) -> SessionData:
        """Save with optimistic concurrency; on conflict merge with the stored copy."""
        added = int(doc["total_turns"]) - base_turns  # this kernel's turns, kept across retries
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.store.save(sid, doc)
                return doc
            except SessionConflictError:
                if attempt:  # two kernels saving in lockstep: let one of them win
                    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
                stored = self.store.load(sid)
                writer = self._writer
                doc = merge_documents(
                    stored, doc, base_turns, self.policy.max_summary_chars, writer
                )
                base_turns = int(doc["total_turns"]) - added
                self._note("conflicts_merged")
        raise SessionConflictError(
            f"session {sid!r} kept changing in the store ({_CONFLICT_RETRIES} tries); "
            "it stays in memory and is saved at the next eviction or flush"
        )

    def _write_out(self, batch: list[_Eviction]) -> None:
        """Store I/O without the lock; a failure keeps the session in memory."""
        self.sync_log()  # logged entries land before the save that covers them, not after
        for item in batch:
            state, sid = item.state, item.state.session_id
            try:
                saved = self._save(sid, item.doc, state.base_turns)
            except Exception as exc:  # any backend failure: keep the data, warn once
                self._store_failed(item, exc)
                continue
            with self.lock:
                merged = saved is not item.doc
                self._set_saved(state, saved, item.turns)
                if self._evicting.get(sid) is state:
                    del self._evicting[sid]
                    state._hollow()
                    self._counters["evictions"] += 1
                elif merged:  # re-attached while saving: take the other kernel's turns too
                    self._rebase(state, saved, item.turns)

    @staticmethod
    def _set_saved(state: ConversationState, doc: SessionData, turns: int) -> None:
        state.revision = int(doc["revision"])
        state.base_turns = turns if doc.get("total_turns") == turns else int(doc["total_turns"])

    @staticmethod
    def _rebase(state: ConversationState, doc: SessionData, turns: int) -> None:
        if state._messages is None:
            return
        extra = state.total_turns - turns
        newer = state._messages[len(state._messages) - extra :] if extra > 0 else []
        total = int(doc["total_turns"])
        users = int(doc.get("user_turns", count_user_turns(doc["messages"])))
        merged = dict(doc, messages=doc["messages"] + newer, total_turns=total + len(newer))
        state._fill(dict(merged, user_turns=users + count_user_turns(newer)))
        state.base_turns = total

    def _store_failed(self, item: _Eviction, exc: Exception) -> None:
        sid = item.state.session_id
        with self.lock:
            self._counters["persist_failures"] += 1
            first = self.last_store_error is None
            self.last_store_error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, SessionConflictError):  # a busy session is not a store outage
                self._store_down_until = time.time() + self.retry_after
            if self._evicting.get(sid) is item.state:
                del self._evicting[sid]
                self._live[sid] = item.state
                self._live.move_to_end(sid, last=False)
                self._bytes += item.state.memory_estimate_bytes
                self._largest.consider(item.state)
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
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty str")
        with self.lock:
            state = self._touch(session_id)
        if state is None:
            state = self._load(session_id, create=True)
        self._after_change()
        return state

    async def aget_or_create(self, session_id: str) -> ConversationState:
        """Async twin of :meth:`get_or_create`; store I/O runs in a worker thread."""
        with self.lock:
            state = self._touch(session_id)
        if state is not None:
            return state
        return await asyncio.to_thread(self.get_or_create, session_id)

    def _touch(self, sid: str) -> ConversationState | None:
        state = self._live.get(sid)
        if state is None:
            state = self._evicting.pop(sid, None)
            if state is None:
                return None
            self._live[sid] = state
            self._bytes += state.memory_estimate_bytes
            self._largest.consider(state)
        self._live.move_to_end(sid)
        state.last_access = time.time()
        return state

    def _load(self, sid: str, create: bool) -> ConversationState:
        """Load from the store outside the lock, then attach (unless someone was faster)."""
        self._check_open()
        doc = load_document(self.store, sid)
        with self.lock:
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
                state._fill(doc)
                self._counters["restores"] += 1
            state._owner = self
            state._lock = self.lock
            state.last_access = time.time()
            self._live[sid] = state
            self._known[sid] = state
            self._bytes += state.memory_estimate_bytes
            self._largest.consider(state)
            return state

    def _restore_into(self, state: ConversationState) -> None:
        """A hollow state is being used: bring its content back (called without the lock)."""
        self._load(state.session_id, create=False)
        self._after_change()

    def get(self, session_id: str) -> ConversationState | None:
        """Like :meth:`get_or_create` but ``None`` for an id that exists nowhere."""
        with self.lock:
            state = self._touch(session_id)
        if state is None:
            try:
                state = self._load(session_id, create=False)
            except KeyError:
                return None
        self._after_change()
        return state

    def __contains__(self, session_id: object) -> bool:
        with self.lock:
            if session_id in self._live or session_id in self._evicting:
                return True
        return isinstance(session_id, str) and load_document(self.store, session_id) is not None

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
        """Forget a session everywhere (memory and store). A held reference becomes a
        standalone state that no longer belongs to this manager."""
        with self.lock:
            state = self._live.pop(session_id, None) or self._evicting.pop(session_id, None)
            self._largest.discard(session_id)
            if state is not None:
                self._bytes -= state.memory_estimate_bytes
            held = state or self._known.get(session_id)
            self._known.pop(session_id, None)
            if held is not None:
                held._owner = None
                held._lock = threading.RLock()
        if self.journal is not None:
            self.journal.forget(session_id)
        removed = self.store.delete(session_id)
        return removed or state is not None

    def flush(self, ids: Iterable[str] | None = None) -> int:
        """Persist every live session (or those of ``ids``) without evicting it."""
        with self._io_lock:
            return self._flush(ids)

    def _flush(self, ids: Iterable[str] | None = None) -> int:
        with self.lock:
            chosen = self._live.values() if ids is None else (self._live.get(i) for i in ids)
            items = [self._snapshot(state) for state in chosen if state is not None]
        self.sync_log()
        saved = 0
        for item in items:
            try:
                doc = self._save(item.state.session_id, item.doc, item.state.base_turns)
            except Exception as exc:
                self._store_failed(item, exc)
                continue
            with self.lock:
                self._set_saved(item.state, doc, item.turns)
                if doc is not item.doc:
                    self._rebase(item.state, doc, item.turns)
            saved += 1
        return saved

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
        self._after_change()
        return new

    def enforce_budget(self) -> None:
        """Apply the count, byte and idle budgets now (e.g. right after lowering them)."""
        self._after_change()

    def replace_store(self, store: SessionStore, *, migrate: bool = True) -> int:
        """Move to another store (e.g. SQLite -> Redis) without losing a session.

        Live sessions are written to the new store; with ``migrate`` every session
        persisted in the old store is copied too (evicted ones would otherwise be
        unreachable). The old store is closed. Returns how many sessions were copied.
        """
        with self._io_lock:
            old = self.store
            copied = 0
            if migrate:
                with self.lock:
                    live = set(self._live) | set(self._evicting)
                for sid in old.list_ids():
                    if sid in live:
                        continue  # written fresh by the flush below
                    doc = load_document(old, sid)
                    if doc is not None:
                        doc.pop("revision", None)
                        store.save(sid, doc)
                        copied += 1
            if self.journal is not None:
                self.journal.close()  # drained into the old store, covered by the copy above
            with self.lock:
                self.store = store
                for state in self._live.values():
                    state.revision = 0  # not in the new store yet
                self.journal = self._journal_for(store)
            self._store_down_until = 0.0
            self.last_store_error = None
            self._flush()
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

    # ----------------------------------------------------------- inspection
    def stats(self) -> dict[str, Any]:
        """Counters and sizes; cheap enough for a dashboard tick."""
        with self.lock:
            snapshot: dict[str, Any] = {
                "sessions_in_memory": len(self._live),
                "sessions_evicting": len(self._evicting),
                "estimated_bytes": self._bytes,
                "max_memory_bytes": self.max_memory_bytes,
                "max_sessions": self.max_sessions,
                **self._counters,
                "last_store_error": self.last_store_error,
            }
        if time.time() < self._store_down_until:  # do not wait on a store known to be down
            snapshot["sessions_persisted"] = None
            return snapshot
        try:
            counter = getattr(self.store, "count", None)
            snapshot["sessions_persisted"] = (
                counter() if counter is not None else len(self.store.list_ids())
            )
        except Exception as exc:
            snapshot["sessions_persisted"] = None
            snapshot["last_store_error"] = f"{type(exc).__name__}: {exc}"
        return snapshot

    def session_info(self, state: ConversationState) -> dict[str, Any]:
        """One row of the sessions table."""
        return {
            "session_id": state.session_id,
            "in_memory": state.is_loaded,
            "messages": len(state._messages) if state._messages is not None else None,
            "summary_chars": len(state._summary),
            "total_turns": state.total_turns,
            "user_turns": state.user_turns,
            "compactions": state.compactions,
            "estimated_bytes": state.memory_estimate_bytes,
            "last_access": state.last_access,
        }

    def largest_sessions(self, n: int = 10) -> list[dict[str, Any]]:
        """The ``n`` largest live sessions; O(n + K) per call, not O(sessions)."""
        with self.lock:
            return [self.session_info(s) for s in self._largest.top(n, self._live)]

    def list_sessions(self) -> list[dict[str, Any]]:
        """Every session, live ones first (with sizes), then those only in the store."""
        with self.lock:
            live = [self.session_info(s) for s in reversed(self._live.values())]
            seen = set(self._live) | set(self._evicting)
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
