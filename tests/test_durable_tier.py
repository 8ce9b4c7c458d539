"""Durable turns together with the compressed tier and the batched store paths.

The turn log's rules (``memory/journal.py``) hold on every path h-perf added:
a session restored from the tier or by ``get_many`` holds each logged message
exactly once, and batched saves (``save_many`` in eviction and flush, spills
from the tier) wait for the log, record the writer's marks and compact the
entries they cover, as single saves do. A "crash" abandons the manager as
SIGKILL would (``test_durable.crash``); real SQLite files and redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_agentmem import SessionManager
from jupyter_agentmem.memory.replay import load_many_with_log, load_with_log
from jupyter_agentmem.stores import SQLiteStore
from jupyter_agentmem.stores.base import LogEntry, SessionStore

from . import redis_server as server_helper
from .test_durable import contents, crash, policy, reopen, say

redis_server = server_helper.redis_server  # the module-scoped fixture
__all__ = ["redis_server", "reopen"]  # fixtures, shared with test_durable


class SlowLogStore(SQLiteStore):
    """A real SQLite store whose log appends take 50 ms: a save that does not wait
    for the log lands before the entries it covers, which then stay uncompacted."""

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        time.sleep(0.05)
        super().append_log(items)


def tiered(store: SessionStore, tier_bytes: int = 1 << 20, **kwargs: Any) -> SessionManager:
    kwargs.setdefault("max_sessions", 2)
    return SessionManager(
        store=store,
        policy=policy(),
        durable_turns=True,
        tier_bytes=tier_bytes,
        **kwargs,
    )


def test_sessions_in_the_tier_survive_a_crash_exactly(
    reopen: Callable[[], SessionStore],
) -> None:
    m = tiered(reopen())
    ids = [f"s{i}" for i in range(6)]
    for sid in ids:
        say(m, sid, f"{sid}-q1", f"{sid}-a1")
    assert m.stats().sessions_in_tier == 4  # evicted into the tier, not written
    assert all(m.store.load(sid) is None for sid in ids)
    say(m, "s0", "s0-q2", "s0-a2")  # restored from the tier, numbering goes on
    assert m.stats().tier_restores == 1
    assert m.sync_log(5.0)
    crash(m)
    again = tiered(reopen())
    for sid in ids:
        tail = [f"{sid}-q2", f"{sid}-a2"] if sid == "s0" else []
        assert contents(again, sid) == [f"{sid}-q1", f"{sid}-a1", *tail]
    again.close()


def test_a_session_restored_from_the_tier_after_a_save_holds_each_turn_once(
    reopen: Callable[[], SessionStore],
) -> None:
    m = tiered(reopen())
    say(m, "a", "q1", "a1")
    m.flush()  # saved whole: its entries compacted, its marks in the document
    say(m, "a", "q2", "a2")
    say(m, "b", "x")
    say(m, "c", "y")  # "a" goes into the tier with q2 a2 logged, not saved
    assert "a" in m._tier  # type: ignore[operator]
    assert m.sync_log(5.0)
    assert [e[1] for e in m.store.read_log("a")] == [3, 4]  # type: ignore[attr-defined]
    say(m, "a", "q3")  # from the tier: the snapshot already holds q2 a2
    assert contents(m, "a") == ["q1", "a1", "q2", "a2", "q3"]
    assert m.sync_log(5.0)
    crash(m)
    again = tiered(reopen())
    assert contents(again, "a") == ["q1", "a1", "q2", "a2", "q3"]
    again.close()


def test_spills_from_the_tier_wait_for_the_log_and_compact_it(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    m = tiered(SlowLogStore(path), tier_bytes=1)  # every eviction spills at once
    ids = [f"s{i}" for i in range(5)]
    for sid in ids:
        say(m, sid, f"{sid}-q1", f"{sid}-a1")
    spilled = ids[:3]  # the two most recent are live
    assert m.stats().sessions_in_tier == 0
    assert m.sync_log(5.0)
    store = m.store
    for sid in spilled:
        doc = store.load(sid)
        assert doc is not None and doc["log_marks"] == {m._writer: 2}
        assert store.read_log(sid) == []  # type: ignore[attr-defined]
    crash(m)
    again = tiered(SQLiteStore(path))
    for sid in ids:
        assert contents(again, sid) == [f"{sid}-q1", f"{sid}-a1"]
    again.close()


def test_batched_saves_wait_for_the_log_and_compact_it(tmp_path: Path) -> None:
    m = SessionManager(max_sessions=8, store=SlowLogStore(tmp_path / "s.sqlite3"), policy=policy())
    assert m.journal is not None
    for sid in ("a", "b", "c"):
        say(m, sid, f"{sid}-q1", f"{sid}-a1")
    assert m.flush() == 3  # one save_many for the three
    assert m.stats().sessions_saving == 0
    for sid in ("a", "b", "c"):
        say(m, sid, f"{sid}-q2")
    assert m.evict_idle(0) == 3  # evicted in one batch
    assert m.stats().sessions_saving == 0
    assert m.sync_log(5.0)
    for sid in ("a", "b", "c"):
        doc = m.store.load(sid)
        assert doc is not None and doc["log_marks"] == {m._writer: 3}
        assert m.store.read_log(sid) == []  # type: ignore[attr-defined]
    m.close()


def test_get_many_after_a_crash_applies_the_log(reopen: Callable[[], SessionStore]) -> None:
    m = tiered(reopen(), tier_bytes=0)
    say(m, "saved", "q1", "a1")
    m.flush()
    say(m, "saved", "q2", "a2")  # on top of the save, only in the log
    say(m, "logonly", "x1", "x2")  # never saved whole
    assert m.sync_log(5.0)
    crash(m)
    store = reopen()
    again = tiered(store, tier_bytes=0, max_sessions=8)  # nothing evicted and reloaded
    states = again.get_many(["saved", "logonly", "new"])
    assert again.stats().restores == 2
    assert [s.session_id for s in states] == ["saved", "logonly", "new"]
    got = {s.session_id: [str(x["content"]) for x in s.to_dict()["messages"]] for s in states}
    assert got == {"saved": ["q1", "a1", "q2", "a2"], "logonly": ["x1", "x2"], "new": []}
    for sid in ("saved", "logonly"):  # the replay was saved whole: same as a single restore
        assert store.read_log(sid) == []  # type: ignore[attr-defined]
        doc = load_with_log(store, sid)
        assert (
            doc is not None
            and doc["messages"] == states[0 if sid == "saved" else 1].to_dict()["messages"]
        )
    again.close()


def test_load_many_with_log_matches_load_with_log(reopen: Callable[[], SessionStore]) -> None:
    m = tiered(reopen(), tier_bytes=0)
    for i in range(4):
        say(m, f"s{i}", *(f"s{i}-m{j}" for j in range(i + 1)))
        if i % 2:
            m.flush([f"s{i}"])
            say(m, f"s{i}", f"s{i}-late")
    assert m.sync_log(5.0)
    crash(m)
    ids = [f"s{i}" for i in range(4)]
    batched = load_many_with_log(reopen(), [*ids, "missing"])
    single = reopen()
    assert set(batched) == set(ids)
    for sid in ids:
        one = load_with_log(single, sid)
        assert one is not None
        assert batched[sid]["messages"] == one["messages"]
        assert batched[sid]["log_marks"] == one["log_marks"]


def test_flush_of_ids_writes_those_held_in_the_tier(tmp_path: Path) -> None:
    m = tiered(SQLiteStore(tmp_path / "s.sqlite3"))
    for sid in ("a", "b", "c", "d"):
        say(m, sid, f"{sid}-q1")
    assert set(m._tier.ids()) == {"a", "b"}  # type: ignore[union-attr]
    assert m.flush(["a", "c"]) == 2  # "a" from the tier, "c" live; "b" and "d" untouched
    assert m._tier.ids() == ["b"]  # type: ignore[union-attr]
    assert m.sync_log(5.0)
    doc = m.store.load("a")
    assert doc is not None and [x["content"] for x in doc["messages"]] == ["a-q1"]
    assert m.store.load("c") is not None
    assert m.store.load("b") is None and m.store.load("d") is None
    assert m.store.read_log("a") == []  # type: ignore[attr-defined]
    assert contents(m, "a") == ["a-q1"]
    m.close()


def test_the_server_takes_tier_bytes_and_durable_turns_from_the_settings(tmp_path: Path) -> None:
    from jupyter_agentmem.agent.settings import AgentMem
    from jupyter_agentmem.serve.app import default_agent

    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    agent = default_agent(AgentMem(tier_bytes=1 << 20), store_url=url)
    assert agent.manager.stats().max_tier_bytes == 1 << 20
    assert agent.manager.journal is not None  # SQLite outlives the process: logged
    agent.manager.close()
    agent = default_agent(AgentMem(durable_turns=False), store_url=url)
    assert agent.manager.journal is None and agent.manager.stats().max_tier_bytes == 0
    agent.manager.close()
