"""The manager's compressed tier: idle sessions kept as bytes before the store.

A mixin of :class:`~jupyter_agentmem.memory.manager.SessionManager`, like
``eviction.py``. With ``tier_bytes > 0``, a session evicted by the count, byte
or idle budget is not written to the store: its document goes into a
:class:`~jupyter_agentmem.memory.tier.CompressedTier` (~1/4 to 1/11 of its live
size) and the state is unloaded. Using it again restores it from there in tens
of microseconds. Only what overflows the tier's own budget is written to the
store, in one ``save_many`` per overflow, merged like any other save if another
kernel changed it meanwhile. ``evict()``, ``flush()`` and ``close()`` still
write to the store: after them, the store has every session.

``get_many`` restores a batch of sessions with one ``load_many`` of the store.

With the turn log (``journal.py``): a tier entry is a whole snapshot, log marks
included, so restoring it needs no log (this writer's entries are all in it; the
ones still queued are compacted by its next save). A spill is a whole save like
any other: it waits for the log first, records the marks (compacting the
entries they cover) and merges by writer. A flush of given ids (the journal's
checkpoint) writes those held in the tier too. ``get_many`` reads the logs
before the documents and replays them, exactly as ``load_with_log``.

Until a spilled document has landed, its id is in ``_spilling`` and a restore
waits for the write (``_io_lock``), so it never reads an older copy.
Compression runs under the manager's lock (~40 µs a session, no I/O), so a
session is always in exactly one place: live, in the tier, or being written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import persist
from .books import Budget
from .document import Document, new_write_id, with_write
from .fields import ManagerFields
from .owner import check_session_id
from .persist import Pending
from .replay import load_many_with_log
from .state import ConversationState
from .tier import Spilled

log = logging.getLogger("jupyter_agentmem.memory.manager")

_PENDING_KEPT = 4
_SPILL_BATCH = 256  # documents per save_many when the tier overflows


class Tiering(ManagerFields):
    """Eviction into the tier, restore from it, and the tier's spill to the store."""

    if TYPE_CHECKING:  # provided by Evictions and SessionManager

        def _store_failed(self, exc: Exception, sid: str | None = None) -> bool: ...

        def _low_water(self) -> int: ...
        def _attach(self, sid: str, doc: Document | None, create: bool) -> ConversationState: ...
        def _check_open(self) -> None: ...
        def get_or_create(self, session_id: str) -> ConversationState: ...
        def enforce_budget(self) -> None: ...

    # -------------------------------------------------------------- eviction
    def _evict_to_tier(self, force: Iterable[str] = ()) -> list[ConversationState]:
        """Move victims into the tier (io lock held); write what the tier spills."""
        tier = self._tier
        assert tier is not None
        moved: list[ConversationState] = []
        spilled: list[Spilled] = []
        with self.lock:
            budget = Budget(self._low_water(), self.max_memory_bytes, self.idle_timeout)
            chosen, _ = self._live.victims(force, budget)
            for state in chosen:
                sid = state.session_id
                doc = state.to_dict()
                meta: tuple[int, tuple[Pending, ...]] = (state.base_total, tuple(state.pending))
                self._live.remove(sid)
                state.unload()
                self._counters["evictions"] += 1
                moved.append(state)
                spilled += tier.put(sid, doc, meta)
            if time.time() >= self._store_down_until:
                spilled += tier.resize(tier.max_bytes)  # what stayed over budget in an outage
            self._spilling.update(item.session_id for item in spilled)
        self._spill(spilled)
        return moved

    def _spill(self, spilled: list[Spilled]) -> None:
        """Write overflowing documents to the store (io lock held, main lock not).
        Anything not confirmed written (a failure, Ctrl-C) goes back into the tier,
        over budget, with its write id pending: if it did land, the next save finds
        it in the stored lineage and merges nothing twice."""
        writes = [self._stamped(item) for item in spilled]
        done: set[str] = set()
        journal = self.journal
        if writes and journal is not None:  # logged entries land before the save covering them
            journal.sync(journal.window)
        try:
            for start in range(0, len(writes), _SPILL_BATCH):
                self._spill_chunk(writes[start : start + _SPILL_BATCH], done)
        finally:
            with self.lock:
                for item, _, pending in writes:
                    if item.session_id not in done:
                        self._put_back(item, (_meta(item.meta)[0], pending))
                    elif journal is not None:  # saved whole: its log starts again
                        journal.snapshotted(item.session_id)
                self._spilling.difference_update(item.session_id for item in spilled)

    def _spill_chunk(
        self, writes: list[tuple[Spilled, Document, tuple[Pending, ...]]], done: set[str]
    ) -> None:
        save_many = getattr(self.store, "save_many", None)
        if save_many is not None and len(writes) > 1:
            try:
                save_many([(item.session_id, doc) for item, doc, _ in writes])
            except Exception:  # nothing written: one by one merges or books each
                pass
            else:
                done.update(item.session_id for item, _, _ in writes)
                return
        for item, doc, pending in writes:
            try:
                persist.save_merging(
                    self.store,
                    item.session_id,
                    doc,
                    _meta(item.meta)[0],
                    pending,
                    self.policy.max_summary_chars,
                    lambda: self._count("conflicts_merged"),
                    self._writer,
                )
            except Exception as exc:  # kept in memory (see _spill); the store may come back
                self._spill_failed(item.session_id, exc)
            else:
                done.add(item.session_id)

    @staticmethod
    def _stamped(item: Spilled) -> tuple[Spilled, Document, tuple[Pending, ...]]:
        """The document to save, with a new write id and the next revision."""
        pending = _meta(item.meta)[1]
        doc = dict(item.doc)
        write_id = new_write_id()
        with_write(doc, list(doc.get("writes", [])), write_id)
        doc["revision"] = int(doc.get("revision", 0)) + 1
        total = int(doc.get("messages_total", 0))
        return item, doc, (*pending, (write_id, total))[-_PENDING_KEPT:]

    def _put_back(self, item: Spilled, meta: object) -> None:
        """Return an unwritten document to the tier (lock held), unless it was
        restored or deleted meanwhile."""
        tier = self._tier
        if tier is None or item.session_id in self._live or item.session_id not in self._spilling:
            return
        tier.hold(item.session_id, item.doc, meta)

    def _spill_failed(self, sid: str, exc: Exception) -> None:
        if self._store_failed(exc):  # a tiered session is not live: no per-session backoff
            log.warning(
                "could not write session %r from the compressed tier to the store (%s); "
                "it stays in memory, over the tier's budget",
                sid,
                exc,
            )

    def _count(self, counter: str) -> None:
        with self.lock:
            self._counters[counter] += 1

    # --------------------------------------------------------------- restore
    def _from_tier(self, sid: str) -> ConversationState | None:
        """Attach a session held in the tier (lock held); None if it is not there."""
        tier = self._tier
        if tier is None:
            return None
        taken = tier.take(sid)
        if taken is None:
            return None
        doc, meta = taken
        state = self._attach(sid, doc, create=True)
        state.base_total, pending = _meta(meta)
        state.pending = pending
        self._counters["tier_restores"] += 1
        return state

    def _tier_lookup(self, sid: str) -> ConversationState | None:
        """The session if live or in the tier (waiting out a spill of it), else None."""
        if self._tier is None:
            return None
        for _ in range(5):
            with self.lock:
                state = self._live.touch(sid) or self._from_tier(sid)
            if state is not None or sid not in self._spilling:
                return state
            self._wait_for_spill(sid)
        return None

    def get_many(self, session_ids: Iterable[str]) -> list[ConversationState]:
        """``get_or_create`` for many ids, reading every session that is not in memory
        with one ``load_many`` (one SQLite query per 500 ids, one Redis round trip)
        instead of one read each: for a server or hub waking a batch of sessions.
        The budgets apply afterwards, as after any call (evicting in one batch)."""
        ids = [check_session_id(sid) for sid in session_ids]
        self._check_open()
        tier = self._tier
        with self.lock:
            wanted = [
                sid
                for sid in dict.fromkeys(ids)
                if sid not in self._live
                and (tier is None or sid not in tier)
                and sid not in self._spilling
            ]
            deletions = self._deletions
        docs = load_many_with_log(self.store, wanted)  # logs replayed, as load_with_log
        found: dict[str, ConversationState] = {}
        with self.lock:
            fresh = self._deletions == deletions
            for sid in dict.fromkeys(ids):
                state = self._live.touch(sid) or self._from_tier(sid)
                if state is None and fresh and sid in wanted:
                    state = self._attach(sid, docs.get(sid), create=True)
                if state is not None:
                    found[sid] = state
        for sid in ids:  # raced a delete or a spill
            if sid not in found:
                found[sid] = self.get_or_create(sid)
        self.enforce_budget()
        return [found[sid] for sid in ids]

    def _wait_for_spill(self, sid: str) -> None:
        """A restore of a document being written waits for the write to land."""
        with self.lock:
            busy = sid in self._spilling
        if busy:
            with self._io_lock:
                pass

    def _drain_tier(self, ids: Iterable[str] | None = None) -> int:
        """Write every document of the tier (or those of ``ids``) to the store (io lock
        held): flush, close, replace_store. Returns how many were written."""
        if self._tier is None:
            return 0
        with self.lock:
            spilled = self._tier.drain(ids)
            self._spilling.update(item.session_id for item in spilled)
        self._spill(spilled)
        with self.lock:
            return sum(1 for item in spilled if item.session_id not in self._tier)


def _meta(meta: object) -> tuple[int, tuple[Pending, ...]]:
    """(base_total, pending) as stored with a tier entry."""
    if isinstance(meta, tuple) and len(meta) == 2:
        return int(meta[0]), tuple(meta[1])
    return 0, ()
