"""The manager's eviction path: choose victims, save them without the lock, book it.

A mixin of :class:`~jupyter_agentmem.memory.manager.SessionManager` (one class,
split across two modules so each has one job): this half owns the budgets and
the write path, the other the public API. A session stays in the books until its
save has landed, so Ctrl-C at any store call leaves it listed and saved by
``close()``; a save whose outcome is unknown is recognised later by its write id
(``persist.py``), never merged twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError

from . import persist
from .books import Budget
from .document import Document, field, new_write_id, with_write, writes_of
from .fields import ManagerFields
from .persist import Pending
from .state import ConversationState

log = logging.getLogger("jupyter_agentmem.memory.manager")

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


class Evictions(ManagerFields):
    """Budgets and the write path (state declared here, set by ``SessionManager``)."""

    if TYPE_CHECKING:  # provided by Tiering

        def _evict_to_tier(self, force: Iterable[str] = ()) -> list[ConversationState]: ...

    #: Extra sessions evicted, at most, with one over the count budget, so they
    #: leave in one store write (0: one write per eviction, the old behaviour).
    evict_batch = 32

    def count(self, counter: str, amount: int = 1) -> None:
        with self.lock:
            self._counters[counter] += amount

    # ---------------------------------------------------------------- budget
    def enforce_budget(self) -> None:
        """Apply the count, byte and idle budgets now (runs after every operation)."""
        if self._closed:
            return
        live = self._live  # the common answer of _over_budget, without the call:
        if (
            len(live.states) <= self.max_sessions
            and live.nbytes <= self.max_memory_bytes
            and self.idle_timeout is None
        ):
            self._oversize_warned = False
            return
        if self._over_budget():
            if self._tier is not None:
                with self._io_lock:
                    self._evict_to_tier()
            else:
                self._evict_now()

    settle = enforce_budget  # StateOwner: a public operation of a state finished

    def _over_budget(self) -> bool:
        """A cheap hint (the decision is re-made under the lock): is there work?"""
        live = self._live
        count = len(live.states)
        if count > self.max_sessions or live.nbytes > self.max_memory_bytes:
            if count <= 1:  # the one session in use is never evicted to make room
                self._warn_oversized()
                return False
            return time.time() >= self._store_down_until
        self._oversize_warned = False
        if self.idle_timeout is None:
            return False
        with self.lock:
            return live.oldest_is_idle(self.idle_timeout)

    def _warn_oversized(self) -> None:
        with self.lock:
            nbytes, sid = self._live.nbytes, self._live.in_use()
            if self._oversize_warned or nbytes <= self.max_memory_bytes or sid is None:
                return
            self._oversize_warned = True
            self._counters["oversized_sessions"] += 1
        log.warning(
            "session %r alone is larger than max_memory_bytes (%s > %s bytes): it stays in "
            "memory, over budget; raise max_memory_bytes or lower max_recent_bytes",
            sid,
            f"{nbytes:,}",
            f"{self.max_memory_bytes:,}",
        )

    # -------------------------------------------------------------- eviction
    def _evict_now(self, force: Iterable[str] = ()) -> list[_Write]:
        """Snapshot and write victims; writes are serialised by ``_io_lock`` (never the
        main lock), so each snapshot carries the revision of the previous save."""
        with self._io_lock:
            batch = self._select_victims(force)
            self._write_all(batch)
            return batch

    def _write_all(self, batch: list[_Write]) -> int:
        """One ``save_many`` for the whole batch (one SQLite transaction, one Redis
        script run) when the store has it; if it fails (all or nothing), each save
        runs on its own, which merges conflicts and books failures per session.
        Returns how many were saved."""
        save_many = getattr(self.store, "save_many", None)
        if save_many is None or len(batch) < 2 or not self.evict_batch:
            return sum(self._write(item) for item in batch)
        with self.lock:
            self._saving += len(batch)
        try:
            if self.journal is not None:  # logged entries land before the saves covering them
                self.journal.sync(self.journal.window)
            save_many([(item.state.session_id, item.doc) for item in batch])
        except Exception:  # nothing was written: the one-by-one path sorts it out
            with self.lock:
                self._saving -= len(batch)
            return sum(self._write(item) for item in batch)
        except BaseException:  # Ctrl-C: the sessions stay live, their write ids pending
            with self.lock:
                self._saving -= len(batch)
            raise
        with self.lock:
            self._saving -= len(batch)
            for item in batch:
                self._written(item, item.doc)
        return len(batch)

    def _select_victims(self, force: Iterable[str]) -> list[_Write]:
        """Forced, idle, then LRU sessions until the budgets hold; the session in use
        (most recent) is never chosen to make room. Nothing leaves ``_live`` here."""
        with self.lock:
            if time.time() < self._store_down_until:
                return []
            budget = Budget(self._low_water(), self.max_memory_bytes, self.idle_timeout)
            chosen, nbytes = self._live.victims(force, budget)
            if len(self._live) - len(chosen) == 1 and nbytes > self.max_memory_bytes:
                self._warn_oversized()
            return [self._snapshot(state, evict=True) for state in chosen]

    def _low_water(self) -> int:
        """Sessions to keep when the count budget is passed: a little under it, so
        evictions leave in batches (one store write for many) instead of one per
        restore. ``max_sessions // 16``, at most ``evict_batch`` (none under 16)."""
        if len(self._live) <= self.max_sessions:
            return self.max_sessions
        return self.max_sessions - min(self.evict_batch, self.max_sessions // 16)

    def _snapshot(self, state: ConversationState, evict: bool) -> _Write:
        """The document to save, stamped with a new write id (lock held)."""
        doc = state.to_dict()
        write_id = new_write_id()
        with_write(doc, doc["writes"], write_id)
        doc["revision"] = state.revision + 1
        if self.journal is not None:  # this snapshot covers the turn log so far
            self.journal.snapshotted(state.session_id)
        turns = state.messages_total
        pending = (*state.pending, (write_id, turns))[-_PENDING_KEPT:]
        state.pending = pending  # until confirmed: it may land even if we never hear back
        return _Write(state, doc, state.version, turns, state.base_total, pending, evict)

    def _write(self, item: _Write) -> bool:
        """Store I/O without the lock; a failure keeps the session in memory."""
        sid = item.state.session_id
        with self.lock:
            self._saving += 1
        try:
            if self.journal is not None:  # logged entries land before the save covering them
                self.journal.sync(self.journal.window)
            saved, _ = persist.save_merging(
                self.store,
                sid,
                item.doc,
                item.base,
                item.pending,
                self.policy.max_summary_chars,
                lambda: self.count("conflicts_merged"),
                self._writer,
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
        owner: object = state.owner
        if owner is not self:
            return  # deleted meanwhile
        merged = saved is not item.doc
        state.revision = int(saved["revision"])
        state.lineage = " ".join(writes_of(saved))
        state.pending = ()
        state.base_total = int(field(saved, "messages_total")) if merged else item.turns
        self._live.backoff.pop(sid, None)
        if item.evict and state.version == item.version and self._live.get(sid) is state:
            self._live.remove(sid)
            state.unload()
            self._counters["evictions"] += 1
        elif merged:
            state.rebase(saved, item.turns)

    def _store_failed(self, exc: Exception, sid: str | None = None) -> bool:
        """Count a failed write and back off: the whole store for ``retry_after`` on an
        outage, else only session ``sid`` (if live). True for the first failure since
        the store last worked (the one worth a warning)."""
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
            elif sid is not None and sid in self._live:
                self._live.backoff[sid] = until
        return first

    def _write_failed(self, item: _Write, exc: Exception) -> None:
        """A store outage pauses all writes for ``retry_after``; a failure of this one
        document (it cannot be encoded, its stored copy is damaged, it kept
        conflicting) only backs this session off, so the others still evict."""
        sid = item.state.session_id
        if self._store_failed(exc, sid):
            log.warning(
                "could not persist session %r (%s); sessions stay in memory, over budget, "
                "and will be written when the store is back",
                sid,
                exc,
            )
