"""SessionManager with a compressed tier: evictions land there first, nothing is lost."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant, rule

from jupyter_agentmem import SessionManager
from jupyter_agentmem.errors import StoreError
from jupyter_agentmem.stores import MemoryStore, SQLiteStore
from jupyter_agentmem.watch.snapshot import session_totals, totals_rows

from .test_sessions import ManagerMachine
from .workload import turn_messages


class CountingStore(MemoryStore):
    """A real MemoryStore that can be switched off and counts batched writes."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.batches: list[int] = []

    def save(self, session_id: str, data: dict[str, Any]) -> None:
        if self.down:
            raise StoreError("store unavailable")
        super().save(session_id, data)

    def save_many(self, items: list[tuple[str, dict[str, Any]]]) -> int:
        if self.down:
            raise StoreError("store unavailable")
        self.batches.append(len(items))
        for sid, data in items:
            super().save(sid, data)
        return len(items)


def tiered(store: Any = None, tier_bytes: int = 1 << 20, **kwargs: Any) -> SessionManager:
    options: dict[str, Any] = {"max_sessions": 2, "max_memory_bytes": 1 << 24}
    options.update(kwargs)
    store = store if store is not None else CountingStore()  # an empty store is falsy
    return SessionManager(store=store, tier_bytes=tier_bytes, **options)


def fill(manager: SessionManager, sid: str, turns: int = 3) -> list[dict[str, Any]]:
    """A few turns whose tool outputs are random hex: ~1.5 KB compressed per session."""
    state = manager.get_or_create(sid)
    rng = random.Random(sid)
    for turn in range(turns):
        state.add_messages(turn_messages(turn, rng.randbytes(200).hex()))
    return state.get_context()


ENTRY = 1400  # bytes a filled session costs in the tier, with margin (checked below)


def test_budget_eviction_goes_to_the_tier_and_comes_back_without_the_store() -> None:
    manager = tiered()
    store = manager.store
    held = manager.get_or_create("a")
    expected = fill(manager, "a")
    fill(manager, "b")
    fill(manager, "c")  # a is the LRU: into the tier
    stats = manager.stats()
    assert not held.is_loaded
    assert (stats.sessions_in_memory, stats.sessions_in_tier, stats.evictions) == (2, 1, 1)
    assert ENTRY / 2 < stats.tier_bytes <= ENTRY and stats.max_tier_bytes == 1 << 20
    assert store.saves == 0 and "a" in manager
    loads = store.loads  # one per new session (is it in the store?)
    assert held.get_context() == expected  # the held reference restores transparently
    stats = manager.stats()
    assert (stats.tier_restores, stats.restores, store.loads) == (1, 1, loads)
    assert stats.sessions_in_tier == 1  # b went to the tier to make room for a
    assert [row["session_id"] for row in manager.list_sessions() if row.get("in_tier")] == ["b"]
    rows = dict(totals_rows(session_totals(manager.stats())))  # what the dashboard shows
    assert rows["compressed tier"].startswith("1 sessions, ")
    assert "compressed tier" not in dict(totals_rows(session_totals(tiered(None, 0).stats())))


def test_tier_overflow_spills_the_oldest_to_the_store_in_one_batch() -> None:
    manager = tiered(tier_bytes=3 * ENTRY)
    expected = {sid: fill(manager, sid) for sid in "abcdefgh"}
    store = manager.store
    assert store.count() > 0 and manager.stats().sessions_in_tier > 0
    assert manager.stats().tier_bytes <= 3 * ENTRY
    assert store.load("a") is not None  # the least recently used went first
    for sid, context in expected.items():
        assert manager.get_or_create(sid).get_context() == context
    assert manager.stats().persist_failures == 0


def test_flush_and_close_write_the_tier_to_the_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    manager = tiered(store=SQLiteStore(path))
    expected = {sid: fill(manager, sid) for sid in "abcd"}
    assert manager.stats().sessions_in_tier == 2
    manager.close()
    again = SessionManager(store=SQLiteStore(path), max_sessions=10)
    for sid, context in expected.items():
        assert again.get_or_create(sid).get_context() == context
    again.close()


def test_delete_forgets_a_session_in_the_tier() -> None:
    manager = tiered()
    for sid in "abc":
        fill(manager, sid)
    assert manager.delete("a") and "a" not in manager
    assert manager.stats().sessions_in_tier == 0
    assert manager.get_or_create("a").get_context() == []


def test_a_store_outage_keeps_spilled_sessions_in_the_tier_until_it_is_back() -> None:
    manager = tiered(tier_bytes=2 * ENTRY, retry_after=0.0)
    store = manager.store
    store.down = True
    expected = {sid: fill(manager, sid) for sid in "abcdef"}
    stats = manager.stats()
    assert stats.persist_failures > 0 and store.count() == 0
    assert stats.sessions_in_tier == 4  # over its budget rather than losing one
    assert stats.tier_bytes > stats.max_tier_bytes
    store.down = False
    fill(manager, "g")  # the next eviction writes what waited, in one batch
    assert store.count() >= 2 and store.batches == [store.count()]
    assert manager.stats().tier_bytes <= manager.stats().max_tier_bytes
    for sid, context in expected.items():
        assert manager.get_or_create(sid).get_context() == context


def test_a_spilled_session_merges_with_another_kernels_copy() -> None:
    store = CountingStore()
    mine = tiered(store=store, tier_bytes=1)  # every eviction spills at once
    other = SessionManager(store=store, max_sessions=10)
    mine.get_or_create("s").add_message({"role": "user", "content": "from this kernel"})
    other.get_or_create("s").add_message({"role": "user", "content": "from the other kernel"})
    other.flush()
    fill(mine, "t")
    fill(mine, "u")  # s spills: conflict with the other kernel's save, merged
    assert mine.stats().conflicts_merged == 1
    contents = [m["content"] for m in store.load("s")["messages"]]
    assert contents == ["from the other kernel", "from this kernel"]


def test_threads_restoring_and_evicting_through_the_tier_lose_nothing() -> None:
    manager = tiered(tier_bytes=16 * 1024, max_sessions=3)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(60):
                state = manager.get_or_create(f"w{n}-{i % 6}")
                state.add_message({"role": "user", "content": f"{n} {i}"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n in range(4):
        for k in range(6):
            state = manager.get_or_create(f"w{n}-{k}")
            assert state.messages_total == 10
    stats = manager.stats()
    assert stats.persist_failures == 0 and stats.tier_restores > 0


def test_a_negative_tier_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="tier_bytes"):
        SessionManager(store=MemoryStore(), tier_bytes=-1)


def test_ctrl_c_after_a_spill_landed_keeps_the_session_and_duplicates_nothing() -> None:
    class LostReply(CountingStore):
        """The write lands, then Ctrl-C arrives before the manager hears back."""

        interrupt = True

        def save(self, session_id: str, data: dict[str, Any]) -> None:
            super().save(session_id, data)
            if self.interrupt:
                self.interrupt = False
                raise KeyboardInterrupt

    store = LostReply()
    manager = tiered(store=store, tier_bytes=1)  # every eviction spills at once
    expected = fill(manager, "a")
    fill(manager, "b")
    with pytest.raises(KeyboardInterrupt):
        fill(manager, "c")  # a spills; its write lands; Ctrl-C
    assert manager.stats().sessions_in_tier == 1  # a kept in memory, not lost
    fill(manager, "d")  # a spills again: recognised as landed, b spills too
    assert manager.stats().conflicts_merged == 0
    assert manager.get_or_create("a").get_context() == expected
    assert len(store.load("a")["messages"]) == len(expected) - 1  # no duplicated turn


class TieredMachine(ManagerMachine):
    """The manager's random-operation machine with a small tier: evictions go there
    first and spill to the store; budgets hold, the tier stays within its own
    budget, and nothing is ever lost."""

    def __init__(self) -> None:
        super().__init__()
        self.manager = SessionManager(
            max_sessions=4,
            max_memory_bytes=96 * 1024,
            store=MemoryStore(),
            max_recent=6,
            tier_bytes=1500,  # a few entries: evictions spill to the store often
        )

    @rule()
    def evict_idle_into_the_tier(self) -> None:
        self.manager.evict_idle(0.0)

    @rule()
    def flush(self) -> None:
        self.manager.flush()

    @invariant()
    def tier_within_budget(self) -> None:
        stats = self.manager.stats()
        assert stats.tier_bytes <= stats.max_tier_bytes
        assert stats.persist_failures == 0


TestTieredMachine = TieredMachine.TestCase
TestTieredMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


class DurableTieredMachine(TieredMachine):
    """The same with the turn log on and checkpoints every few entries, so the
    journal's writer flushes sessions (live or in the tier) while the tier spills."""

    def __init__(self) -> None:
        super().__init__()
        self.manager.close()
        self.manager = SessionManager(
            max_sessions=4,
            max_memory_bytes=96 * 1024,
            store=MemoryStore(),
            max_recent=6,
            tier_bytes=1500,
            durable_turns=True,
        )
        assert self.manager.journal is not None
        self.manager.journal.checkpoint_every = 4


TestDurableTieredMachine = DurableTieredMachine.TestCase
TestDurableTieredMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_get_many_restores_a_batch_with_one_store_read(tmp_path: Path) -> None:
    reads: list[str] = []

    class CountingSQLite(SQLiteStore):
        def load(self, session_id: str) -> dict[str, Any] | None:
            reads.append("load")
            return super().load(session_id)

        def load_many(self, session_ids: Any) -> dict[str, dict[str, Any]]:
            reads.append("load_many")
            return super().load_many(session_ids)

    path = tmp_path / "s.sqlite3"
    writer = SessionManager(store=SQLiteStore(path), max_sessions=100)
    expected = {f"s{i}": fill(writer, f"s{i}", turns=1) for i in range(30)}
    writer.close()
    store = CountingSQLite(path)
    manager = SessionManager(store=store, max_sessions=20, tier_bytes=1 << 20)
    fill(manager, "live")
    manager.evict_idle(0.0)  # "live" goes to the tier
    fill(manager, "live2")
    reads.clear()
    ids = ["s3", "live", "new", "s3", "live2", *expected]
    states = manager.get_many(ids)
    assert reads == ["load_many"]  # one read for every session not in memory
    assert [s.session_id for s in states] == ids and states[0] is states[3]
    assert states[2].get_context() == []
    for state in states[5:]:
        assert state.get_context() == expected[state.session_id]
    stats = manager.stats()
    assert stats.sessions_in_memory <= 20 and stats.tier_restores >= 1
