"""SessionManager: budgets after every operation, real persistence, transparent restore."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jupyter_agentmem import ConversationState, ExtractiveSummarizer, SessionManager, StatePolicy
from jupyter_agentmem.errors import StoreError
from jupyter_agentmem.stores import MemoryStore, SQLiteStore

from .workload import turn_messages


class FlakyStore(MemoryStore):
    """A real MemoryStore that can be switched off, like a Redis that went away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def save(self, session_id: str, data: dict[str, Any]) -> None:
        if self.down:
            raise StoreError("store unavailable")
        super().save(session_id, data)


def small_manager(**kwargs: Any) -> SessionManager:
    options: dict[str, Any] = {"max_sessions": 3, "max_memory_bytes": 1024 * 1024}
    options.update(kwargs)
    options.setdefault("store", MemoryStore())
    return SessionManager(**options)


def test_session_count_limit_evicts_least_recently_used() -> None:
    manager = small_manager()
    for sid in "abc":
        manager.get_or_create(sid).add_message({"role": "user", "content": sid})
    manager.get_or_create("a")  # a becomes most recent; b is now the LRU
    manager.get_or_create("d")
    assert manager.live_ids() == ["c", "a", "d"]
    assert manager.stats().evictions == 1
    assert manager.store.load("b") is not None


def test_growth_through_a_held_state_triggers_eviction() -> None:
    """Flaw 3: the naive manager only checks limits when a session is created."""
    manager = small_manager(
        max_sessions=10, max_memory_bytes=200 * 1024, policy=StatePolicy(auto_compact=False)
    )
    others = [manager.get_or_create(f"s{i}") for i in range(3)]
    for state in others:
        state.add_message({"role": "user", "content": "x" * 30_000})
    held = manager.get_or_create("big")
    for _ in range(20):
        held.add_message({"role": "user", "content": "y" * 9_000})
        assert manager.stats().estimated_bytes <= manager.max_memory_bytes
    assert manager.stats().evictions >= 1


def test_evicted_session_comes_back_byte_for_byte() -> None:
    """Flaw 4: the naive manager 'persists' with a no-op and recreates an empty session."""
    manager = small_manager(max_sessions=1)
    state = manager.get_or_create("x")
    for turn in range(5):
        state.add_messages(turn_messages(turn, tool_output="r" * 500))
    before = state.to_dict()
    manager.get_or_create("y")  # evicts x
    assert not state.is_loaded
    assert manager.stats().evictions == 1
    again = manager.get_or_create("x")
    after = again.to_dict()
    assert after["messages"] == before["messages"]
    assert after["summary"] == before["summary"]
    for key in ("messages_total", "turns", "compactions", "created_at", "truncated_chars_saved"):
        assert after[key] == before[key]
    assert manager.stats().restores == 1


def test_a_held_reference_to_an_evicted_state_never_swallows_a_message() -> None:
    manager = small_manager(max_sessions=1)
    held = manager.get_or_create("x")
    held.add_message({"role": "user", "content": "first"})
    manager.get_or_create("y")
    assert not held.is_loaded
    held.add_message({"role": "user", "content": "second"})  # re-attaches transparently
    assert held.is_loaded
    assert [m["content"] for m in manager.get_or_create("x").recent_messages] == [
        "first",
        "second",
    ]
    assert manager.get_or_create("x") is held  # one object per id
    assert len(manager) == 1


def test_reading_a_hollow_state_restores_it() -> None:
    manager = small_manager(max_sessions=1, max_recent=2)
    held = manager.get_or_create("x")
    held.add_messages([{"role": "user", "content": f"m{i}"} for i in range(6)])
    summary = held.summary
    assert summary
    manager.get_or_create("y")
    assert not held.is_loaded
    assert held.summary == summary
    assert held.get_context()[0]["role"] == "system"


def test_idle_sessions_are_evicted() -> None:
    manager = small_manager(max_sessions=10, idle_timeout=60)
    old = manager.get_or_create("old")
    old.add_message({"role": "user", "content": "hello"})
    old.last_access -= 120
    manager.get_or_create("new")
    assert "old" not in manager.live_ids()
    assert manager.get_or_create("old").recent_messages == [{"role": "user", "content": "hello"}]
    stale = manager.get_or_create("stale")
    stale.last_access -= 30
    assert manager.evict_idle(10) == 1


def test_store_failure_keeps_sessions_in_memory_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    manager = small_manager(max_sessions=1, store=store, retry_after=0.0)
    store.down = True
    for sid in "abc":
        manager.get_or_create(sid).add_message({"role": "user", "content": sid})
    stats = manager.stats()
    assert stats.sessions_in_memory == 3  # over budget rather than losing data
    assert stats.persist_failures >= 1
    assert sum("could not persist" in r.message for r in caplog.records) == 1
    store.down = False
    manager.get_or_create("c")
    assert manager.stats().sessions_in_memory == 1
    for sid in "ab":
        assert store.load(sid)["messages"] == [{"role": "user", "content": sid}]  # type: ignore[index]


def test_flush_and_a_new_manager_see_everything(tmp_path: Any) -> None:
    path = tmp_path / "s.sqlite3"
    manager = SessionManager(store=SQLiteStore(path))
    manager.get_or_create("keep").add_messages(turn_messages(0, tool_output="{}"))
    manager.close()
    again = SessionManager(store=SQLiteStore(path))
    assert again.get_or_create("keep").recent_messages == turn_messages(0, tool_output="{}")
    again.close()


def test_delete_forgets_memory_and_store() -> None:
    manager = small_manager()
    held = manager.get_or_create("gone")
    held.add_message({"role": "user", "content": "x"})
    manager.flush()
    assert manager.delete("gone")
    assert "gone" not in manager
    assert manager.get("gone") is None
    held.add_message({"role": "user", "content": "still works, standalone"})
    assert manager.stats().sessions_in_memory == 0


def test_conflicting_writers_merge_and_lose_no_turn() -> None:
    store = MemoryStore()
    first, second = small_manager(store=store), small_manager(store=store)
    first.get_or_create("shared").add_message({"role": "user", "content": "base"})
    first.flush()
    a = first.get_or_create("shared")
    b = second.get_or_create("shared")
    a.add_message({"role": "user", "content": "from first"})
    b.add_message({"role": "user", "content": "from second"})
    first.flush()
    second.flush()
    assert second.stats().conflicts_merged == 1
    third = small_manager(store=store).get_or_create("shared")
    contents = [m["content"] for m in third.recent_messages]
    assert contents == ["base", "from first", "from second"]
    assert third.messages_total == 3
    assert [m["content"] for m in b.recent_messages] == contents


def test_thread_and_asyncio_hammering_keeps_invariants() -> None:
    manager = small_manager(max_sessions=8, max_memory_bytes=256 * 1024)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(200):
                state = manager.get_or_create(f"s{(seed * 7 + i) % 20}")
                state.add_message({"role": "user", "content": f"{seed}:{i}:" + "p" * 500})
                manager.stats()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    async def async_worker(seed: int) -> None:
        for i in range(200):
            state = await manager.aget_or_create(f"s{(seed * 5 + i) % 20}")
            state.add_message({"role": "user", "content": f"a{seed}:{i}"})
            await asyncio.sleep(0)

    async def run_async() -> None:
        await asyncio.gather(*(async_worker(s) for s in range(4)))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=asyncio.run, args=(run_async(),)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = manager.stats()
    assert stats.sessions_in_memory <= 8
    assert stats.estimated_bytes <= 256 * 1024
    manager.flush()
    total = 0
    for sid in manager.store.list_ids():
        total += manager.get_or_create(sid).messages_total
    assert total == 4 * 200 + 4 * 200  # nothing lost


def test_accounting_matches_a_full_recount() -> None:
    manager = small_manager(max_sessions=50, max_memory_bytes=512 * 1024)
    for i in range(300):
        manager.get_or_create(f"s{i % 37}").add_messages(turn_messages(i, tool_output="t" * 300))
    recount = sum(s.memory_estimate_bytes for s in manager.live_states())
    assert manager.stats().estimated_bytes == recount


class ManagerMachine(RuleBasedStateMachine):
    """Random operation sequences: budget and count hold, nothing is ever lost."""

    def __init__(self) -> None:
        super().__init__()
        self.manager = SessionManager(
            max_sessions=4, max_memory_bytes=96 * 1024, store=MemoryStore(), max_recent=6
        )
        self.expected: dict[str, int] = {}
        self.held: dict[str, ConversationState] = {}

    @rule(sid=st.sampled_from(["a", "b", "c", "d", "e", "f"]), size=st.integers(0, 12_000))
    def add(self, sid: str, size: int) -> None:
        self.manager.get_or_create(sid).add_message({"role": "user", "content": "z" * size})
        self.expected[sid] = self.expected.get(sid, 0) + 1

    @rule(sid=st.sampled_from(["a", "b", "c"]))
    def hold(self, sid: str) -> None:
        self.held[sid] = self.manager.get_or_create(sid)

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def add_to_held(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.held)))
        self.held[sid].add_message({"role": "assistant", "content": "held"})
        self.expected[sid] = self.expected.get(sid, 0) + 1

    @rule(sid=st.sampled_from(["a", "b", "c", "d", "e", "f"]))
    def evict(self, sid: str) -> None:
        self.manager.evict(sid)

    @rule()
    def compact(self) -> None:
        self.manager.compact_all()

    @invariant()
    def budgets_hold(self) -> None:
        stats = self.manager.stats()
        assert stats.sessions_in_memory <= 4
        assert stats.estimated_bytes <= 96 * 1024

    @invariant()
    def nothing_lost(self) -> None:
        for sid, count in self.expected.items():
            assert self.manager.get_or_create(sid).messages_total == count


TestManagerMachine = ManagerMachine.TestCase
TestManagerMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_policy_changes_reach_existing_sessions() -> None:
    manager = small_manager(max_sessions=10)
    held = manager.get_or_create("a")
    held.add_messages([{"role": "user", "content": f"m{i}"} for i in range(8)])
    manager.update_policy(max_recent=4)
    assert held.policy.max_recent == 4
    assert len(held.recent_messages) <= 4
    assert manager.get_or_create("new").policy.max_recent == 4


def test_replace_store_moves_every_session(tmp_path: Any) -> None:
    old = SQLiteStore(tmp_path / "old.sqlite3")
    manager = small_manager(max_sessions=2, store=old)
    for sid in "abcd":
        manager.get_or_create(sid).add_message({"role": "user", "content": sid})
    assert manager.stats().evictions == 2
    new = MemoryStore()
    copied = manager.replace_store(new)
    assert copied == 2
    assert sorted(new.list_ids()) == ["a", "b", "c", "d"]
    for sid in "abcd":
        assert manager.get_or_create(sid).recent_messages == [{"role": "user", "content": sid}]
    manager.get_or_create("a").add_message({"role": "user", "content": "more"})
    manager.flush()
    assert new.load("a")["messages_total"] == 2  # type: ignore[index]


def test_largest_sessions_match_a_full_sort_under_churn() -> None:
    import random

    rng = random.Random(7)
    manager = small_manager(
        max_sessions=400, max_memory_bytes=64 * 1024 * 1024, policy=StatePolicy(auto_compact=False)
    )
    for step in range(4000):
        sid = f"s{rng.randrange(500)}"
        if rng.random() < 0.05:
            manager.evict(sid)
        elif rng.random() < 0.05 and sid in manager.live_ids():
            manager.get_or_create(sid).compact(ExtractiveSummarizer())
        else:
            manager.get_or_create(sid).add_message(
                {"role": "user", "content": "x" * rng.randrange(5000)}
            )
        if step % 250 == 0:
            expected = sorted(
                (s.memory_estimate_bytes for s in manager.live_states()), reverse=True
            )[:10]
            got = [row["estimated_bytes"] for row in manager.largest_sessions(10)]
            assert got == expected
