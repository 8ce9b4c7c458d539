"""RedisStore against a real redis-server: round trips, revisions, TTL and faults.

Every test uses its own key prefix, so tests share one server (module fixture)
without seeing each other's sessions. Tests that kill or pause the server
restore it before they finish.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.stores import SessionStore, open_store
from jupyter_agentmem.stores.redis import RedisStore, public_url

from . import redis_server as server_helper
from .redis_server import RedisServer, free_port
from .strategies import messages

pytestmark = pytest.mark.redis
redis_server = server_helper.redis_server  # the module-scoped fixture

ROOT = Path(__file__).resolve().parent.parent
TRICKY_IDS = [
    "plain",
    "*",
    "a*",
    "[ab]",
    "?",
    "with space",
    'quote\'s "double"',
    "slash/and\\back",
    "colon:s:x",
    "agentmem:ids",
    "ünïcødé 会话 🚀",
    "\\*escaped\\?",
    "lone \ud83d surrogate",
]


def doc(session_id: str, texts: list[str], revision: int | None = None) -> dict[str, Any]:
    """A session document shaped like ``ConversationState.to_dict()``."""
    data: dict[str, Any] = {
        "format": 1,
        "session_id": session_id,
        "summary": "",
        "messages": [{"role": "user", "content": t} for t in texts],
        "messages_total": len(texts),
        "compactions": 0,
        "truncated_chars_saved": 0,
        "created_at": 1.0,
        "last_access": 1.0,
    }
    if revision is not None:
        data["revision"] = revision
    return data


def contents(data: dict[str, Any] | None) -> list[str]:
    assert data is not None
    return [m["content"] for m in data["messages"]]


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    """The shared server, running (a failed fault test must not break the next one)."""
    redis_server.resume()
    redis_server.start()
    return redis_server


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    s = RedisStore(server.url, prefix=prefix)
    yield s
    s.close()


@pytest.fixture
def raw(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def manager(store: RedisStore, **kwargs: Any) -> SessionManager:
    """A manager that keeps every message (no compaction) so tests can count them."""
    kwargs.setdefault("max_sessions", 2)
    return SessionManager(store=store, max_recent=10_000, max_recent_bytes=10**8, **kwargs)


# ------------------------------------------------------------------ round trips
session_ids = st.text(min_size=1, max_size=30) | st.sampled_from(TRICKY_IDS)


def test_round_trip_of_arbitrary_ids_and_documents(server: RedisServer) -> None:
    store = RedisStore(server.url, prefix=f"rt{uuid.uuid4().hex[:6]}:", compress_threshold=200)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(session_id=session_ids, msgs=messages, summary=st.text(max_size=400))
    def check(session_id: str, msgs: list[dict[str, Any]], summary: str) -> None:
        data = dict(doc(session_id, []), messages=msgs, summary=summary)
        store.save(session_id, data)
        assert store.load(session_id) == {**data, "revision": 1}
        assert store.list_ids() == [session_id]
        assert store.count() == 1
        assert store.delete(session_id)
        assert store.load(session_id) is None

    try:
        check()
    finally:
        store.close()


def test_large_documents_are_compressed_and_small_ones_are_plain_json(
    store: RedisStore, raw: redis.Redis, prefix: str
) -> None:
    big = doc("big", [f"row {i}: " + "lorem ipsum " * 20 for i in range(200)], revision=1)
    small = doc("small", ["hi"], revision=1)
    store.save("big", big)
    store.save("small", small)
    text = json.dumps(big, ensure_ascii=False, separators=(",", ":")).encode()
    stored = raw.hget(store.doc_key("big"), "data")
    assert stored is not None and stored[:1] == b"z"
    assert len(stored) < len(text) / 5
    plain = raw.hget(store.doc_key("small"), "data")
    assert plain == b"j" + json.dumps(small, separators=(",", ":")).encode()
    assert store.load("big") == big
    assert store.load("small") == small


def test_list_count_delete_with_glob_characters_in_ids(
    store: RedisStore, raw: redis.Redis, prefix: str, server: RedisServer
) -> None:
    for sid in TRICKY_IDS:
        store.save(sid, doc(sid, [sid]))
    other = open_store(server.url)  # the URL alone picks this store
    assert isinstance(other, RedisStore) and isinstance(other, SessionStore)
    other.close()
    other = RedisStore(server.url, prefix=prefix + "other:")
    other.save("*", doc("*", ["elsewhere"]))
    assert sorted(store.list_ids()) == sorted(TRICKY_IDS)
    assert store.count() == len(TRICKY_IDS)
    assert other.list_ids() == ["*"]
    assert contents(store.load("*")) == ["*"]
    assert store.delete("*") and not store.delete("*")
    assert store.load("*") is None and contents(other.load("*")) == ["elsewhere"]
    assert store.count() == len(TRICKY_IDS) - 1
    # A key removed behind the store's back leaves the index when it is noticed.
    raw.delete(store.doc_key("[ab]"))
    assert "[ab]" not in store.list_ids()
    assert store.count() == len(TRICKY_IDS) - 2
    other.close()


# -------------------------------------------------------------------- revisions
def test_revision_rule_between_two_writers(store: RedisStore, server: RedisServer) -> None:
    second = RedisStore(server.url, prefix=store.prefix)
    store.save("s", doc("s", ["a"], revision=1))
    loaded = second.load("s")
    assert loaded is not None and loaded["revision"] == 1
    second.save("s", doc("s", ["a", "b"], revision=2))
    with pytest.raises(SessionConflictError, match=r"at revision 2 .*expected 1"):
        store.save("s", doc("s", ["a", "mine"], revision=2))
    assert contents(store.load("s")) == ["a", "b"]
    with pytest.raises(SessionConflictError, match="at revision 0"):
        store.save("new", doc("new", ["x"], revision=2))
    store.save("s", doc("s", ["forced"]))  # no revision: unconditional, revision still counts
    forced = second.load("s")
    assert forced is not None and forced["revision"] == 3 and contents(forced) == ["forced"]
    second.close()


def test_save_many_is_all_or_nothing(store: RedisStore) -> None:
    store.save("b", doc("b", ["b1"], revision=1))
    batch = [("a", doc("a", ["a1"], revision=1)), ("b", doc("b", ["b2"], revision=1))]
    with pytest.raises(SessionConflictError, match="'b'"):
        store.save_many(batch)
    assert store.load("a") is None and store.count() == 1
    assert store.save_many([("a", doc("a", ["a1"], revision=1)), ("c", doc("c", []))]) == 2
    assert sorted(store.list_ids()) == ["a", "b", "c"]


def test_a_retried_write_that_already_landed_is_not_a_conflict(store: RedisStore) -> None:
    first = doc("s", ["a"], revision=1)
    store.save("s", first)
    store.save("s", first)  # e.g. the reply was lost to a timeout and the manager retries
    with pytest.raises(SessionConflictError):
        store.save("s", doc("s", ["different"], revision=1))
    loaded = store.load("s")
    assert loaded is not None and loaded["revision"] == 1 and contents(loaded) == ["a"]


# -------------------------------------------------------------------------- TTL
def test_ttl_expires_idle_sessions_and_access_refreshes_it(
    server: RedisServer, prefix: str, raw: redis.Redis
) -> None:
    store = RedisStore(server.url, prefix=prefix, ttl=1)
    store.save("kept", doc("kept", ["k"]))
    store.save("idle", doc("idle", ["i"]))
    assert 0 < raw.pttl(store.doc_key("kept")) <= 1000
    time.sleep(0.6)
    assert contents(store.load("kept")) == ["k"]  # pushes its expiry back
    time.sleep(0.6)
    assert store.load("idle") is None
    assert store.list_ids() == ["kept"] and store.count() == 1
    time.sleep(1.1)
    assert store.count() == 0 and store.list_ids() == []
    assert raw.zcard(f"{prefix}ids") == 0  # the index forgot them too
    store.close()


# ----------------------------------------------------------------------- faults
def test_unreachable_server_fails_fast_with_a_clear_masked_error() -> None:
    port = free_port()
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}") as info:
        RedisStore(f"redis://me:hunter2@127.0.0.1:{port}/0", connect_timeout=1)
    assert time.monotonic() - start < 5
    assert "hunter2" not in str(info.value) and "me:***@" in str(info.value)
    start = time.monotonic()
    with pytest.raises(StoreError):  # a black hole: no refusal, only the connect timeout
        open_store("redis://10.255.255.1:6379/0?socket_connect_timeout=0.5")
    assert time.monotonic() - start < 5
    assert public_url("redis://h/0?password=s3cret&db=1") == "redis://h/0?password=%2A%2A%2A&db=1"


def test_killed_server_keeps_sessions_in_memory_and_loses_nothing_after_restart(
    server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(server.url, prefix=prefix, socket_timeout=1, connect_timeout=1)
    mgr = manager(store, retry_after=0.2, max_memory_bytes=64 * 1024)
    expected: dict[str, list[str]] = {}

    def add(sid: str, n: int, size: int = 100) -> None:
        state = mgr.get_or_create(sid)
        for _ in range(n):
            text = f"{sid}-{len(expected.setdefault(sid, []))}|" + "x" * size
            expected[sid].append(text)
            state.add_message({"role": "user", "content": text})

    add("s0", 3)
    add("s1", 3)
    server.stop(kill=True)
    caplog.set_level(logging.WARNING, logger="jupyter_agentmem.memory.manager")
    for _ in range(6):  # both sessions grow past the byte budget: eviction must fail
        add("s0", 1, size=8000)
        add("s1", 1, size=8000)
        time.sleep(0.05)
    stats = mgr.stats()
    assert stats.persist_failures > 0 and stats.sessions_persisted is None
    assert stats.estimated_bytes > mgr.max_memory_bytes  # over budget, nothing dropped
    assert sorted(mgr.live_ids()) == ["s0", "s1"]
    warnings = [r for r in caplog.records if "could not persist" in r.getMessage()]
    assert len(warnings) == 1
    start = time.monotonic()
    with pytest.raises(StoreError, match="Connection refused"):
        mgr.get_or_create("new")  # it might exist in the store: refuse rather than guess
    assert time.monotonic() - start < 1

    server.start()  # same port (and empty: nothing had been persisted before the crash)
    time.sleep(0.25)  # retry_after
    add("s0", 1)  # any operation retries the pending evictions
    assert mgr.stats().estimated_bytes <= mgr.max_memory_bytes
    mgr.flush()
    check = RedisStore(server.url, prefix=prefix)
    assert sorted(check.list_ids()) == ["s0", "s1"]
    for sid, count in (("s0", 10), ("s1", 9)):
        loaded = check.load(sid)
        assert loaded is not None and contents(loaded) == expected[sid]
        assert loaded["messages_total"] == len(expected[sid]) == count
        assert [m["content"] for m in mgr.get_or_create(sid).recent_messages] == expected[sid]
    check.close()
    mgr.close()


def test_slow_server_times_out_without_holding_the_manager_lock(
    server: RedisServer, prefix: str
) -> None:
    store = RedisStore(server.url, prefix=prefix, socket_timeout=0.5)
    mgr = manager(store, retry_after=0.2)
    for sid in ("a", "b"):
        mgr.get_or_create(sid).add_message({"role": "user", "content": sid})
    server.pause(1.8)
    start = time.monotonic()
    with pytest.raises(StoreError, match="Timeout"):
        store.load("a")
    assert 0.4 < time.monotonic() - start < 1.5

    worker = threading.Thread(target=mgr.evict, args=("a",))
    worker.start()
    time.sleep(0.15)  # the worker is now waiting on the frozen server
    start = time.monotonic()
    assert mgr.lock.acquire(timeout=0.2)
    mgr.lock.release()
    assert mgr.get_or_create("b").recent_messages == [{"role": "user", "content": "b"}]
    assert time.monotonic() - start < 0.3 and worker.is_alive()
    stats = mgr.stats()  # its store count times out too, but within socket_timeout
    assert time.monotonic() - start < 1.5
    assert stats.sessions_in_memory == 2 and stats.sessions_saving == 1  # a stays listed
    assert stats.sessions_persisted is None
    worker.join(timeout=3)
    assert "a" in mgr.live_ids() and mgr.stats().persist_failures >= 1  # kept in memory

    server.resume()
    time.sleep(0.25)
    mgr.evict("a")  # the timed-out write may have landed meanwhile: still no duplicate
    assert mgr.live_ids() == ["b"]
    assert contents(store.load("a")) == ["a"]
    mgr.close()


def test_corrupt_values_fail_only_their_own_session(
    store: RedisStore, raw: redis.Redis, prefix: str
) -> None:
    store.save("good", doc("good", ["fine"]))
    raw.set(store.doc_key("string"), b"\x80garbage")
    bad_hashes: dict[str, tuple[int | str, bytes]] = {
        "notjson": (1, b"j{not json"),
        "badzlib": (1, b"z\x00\x01\x02"),
        "notdoc": (1, b"j[1,2]"),
        "format": (1, b"x{}"),
        "badrev": ("abc", b"j{}"),
        "badutf8": (1, b"j\xff\xfe"),
    }
    for sid, (rev, data) in bad_hashes.items():
        raw.hset(store.doc_key(sid), mapping={"rev": rev, "data": data})
    for sid in ["string", *bad_hashes]:
        with pytest.raises(StoreCorruptError, match=repr(sid)):
            store.load(sid)
    with pytest.raises(StoreCorruptError, match="left untouched"):
        store.save("string", doc("string", ["x"], revision=1))
    assert raw.get(store.doc_key("string")) == b"\x80garbage"
    assert contents(store.load("good")) == ["fine"] and store.list_ids() == ["good"]
    mgr = manager(store)
    with pytest.raises(StoreCorruptError):
        mgr.get("notjson")
    assert mgr.get("good") is not None
    assert store.delete("string")  # the way out: delete it explicitly
    store.save("string", doc("string", ["x"], revision=1))
    mgr.close()


# -------------------------------------------------------------- sharing sessions
PROCESS_B = """
import json, sys
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.stores.redis import RedisStore

store = RedisStore(sys.argv[1], prefix=sys.argv[2])
mgr = SessionManager(store=store, max_sessions=1, max_recent=10_000, max_recent_bytes=10**8)
ids = sorted(store.list_ids())
seen = {}
for sid in ids:
    state = mgr.get_or_create(sid)
    seen[sid] = [m["content"] for m in state.recent_messages]
    state.add_message({"role": "user", "content": f"B-{sid}"})
mgr.close()
print(json.dumps(seen))
"""


def test_two_processes_share_sessions_through_the_server(server: RedisServer, prefix: str) -> None:
    mgr = manager(RedisStore(server.url, prefix=prefix), max_sessions=10)
    for sid in ("s1", "s2", "s3"):
        mgr.get_or_create(sid).add_messages(
            [{"role": "user", "content": f"A-{sid}-{i}"} for i in range(2)]
        )
    assert mgr.flush() == 3
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", PROCESS_B, server.url, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {sid: [f"A-{sid}-0", f"A-{sid}-1"] for sid in ("s1", "s2", "s3")}

    assert mgr.evict("s1")  # reload: A sees B's turn
    assert [m["content"] for m in mgr.get_or_create("s1").recent_messages][-1] == "B-s1"
    # s2 is still live (stale) here: A's next turn merges after B's instead of replacing it.
    mgr.get_or_create("s2").add_message({"role": "user", "content": "A-s2-2"})
    mgr.flush()
    check = RedisStore(server.url, prefix=prefix)
    assert contents(check.load("s2")) == ["A-s2-0", "A-s2-1", "B-s2", "A-s2-2"]
    assert mgr.stats().conflicts_merged >= 1
    check.close()
    mgr.close()


class InterleavingStore(RedisStore):
    """A real RedisStore that lets another kernel write right after the next load,
    to replay deterministically the race of two kernels saving one session."""

    between: Callable[[], None] | None = None

    def load(self, session_id: str) -> dict[str, Any] | None:
        data = super().load(session_id)
        hook, self.between = self.between, None
        if hook is not None:
            hook()
        return data


def test_a_second_conflict_during_one_save_loses_no_turn(server: RedisServer, prefix: str) -> None:
    store_a = InterleavingStore(server.url, prefix=prefix)
    a, b = manager(store_a), manager(RedisStore(server.url, prefix=prefix))
    a.get_or_create("s").add_message({"role": "user", "content": "a0"})
    a.flush()
    b.get_or_create("s").add_message({"role": "user", "content": "b1"})
    b.flush()
    a.get_or_create("s").add_message({"role": "user", "content": "a1"})

    def kernel_b_writes_again() -> None:
        b.get_or_create("s").add_message({"role": "user", "content": "b2"})
        b.flush()

    store_a.between = kernel_b_writes_again  # A: conflict, load, (B saves), merge, conflict
    a.flush()
    final = RedisStore(server.url, prefix=prefix).load("s")
    assert final is not None and final["messages_total"] == 4
    assert contents(final) == ["a0", "b1", "b2", "a1"]
    a.close()
    b.close()


def test_two_managers_continuing_one_session_lose_no_turn(server: RedisServer, prefix: str) -> None:
    managers = [manager(RedisStore(server.url, prefix=prefix)) for _ in range(2)]
    managers[0].get_or_create("shared").add_message({"role": "user", "content": "start"})
    managers[0].flush()
    turns = 25
    # Both add before either saves, so every round's second save conflicts (not left to timing).
    barrier = threading.Barrier(2, timeout=30)

    def writer(index: int) -> None:
        mgr = managers[index]
        for i in range(turns):
            mgr.get_or_create("shared").add_message({"role": "user", "content": f"m{index}-{i}"})
            barrier.wait()
            mgr.flush()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for mgr in managers:
        mgr.flush()
    check = RedisStore(server.url, prefix=prefix)
    final = check.load("shared")
    assert final is not None
    texts = contents(final)
    assert sorted(texts) == sorted(
        ["start"] + [f"m{k}-{i}" for k in range(2) for i in range(turns)]
    )
    assert final["messages_total"] == 1 + 2 * turns == len(texts)
    for k in range(2):  # each writer's turns keep their order
        mine = [t for t in texts if t.startswith(f"m{k}-")]
        assert mine == [f"m{k}-{i}" for i in range(turns)]
    assert sum(m.stats().conflicts_merged for m in managers) >= 1
    check.close()
    for mgr in managers:
        mgr.close()


# ------------------------------------------------------------- key layout v1 -> v2
def test_keys_written_by_the_previous_layout_are_renamed_once_and_load(
    server: RedisServer, raw: redis.Redis, prefix: str
) -> None:
    v1 = {"plain": "j", "a*b": "j", "{braced}": "j"}
    for sid in v1:  # exactly what version 1 wrote: {prefix}s:<id>, hash of rev + data
        body = json.dumps(doc(sid, [f"old {sid}"]), separators=(",", ":")).encode()
        raw.hset(f"{prefix}s:{sid}".encode(), mapping={"rev": 3, "data": b"j" + body})
        raw.zadd(f"{prefix}ids", {sid: float("inf")})
    raw.set(f"{prefix}s:notahash", b"x")  # not ours to move
    store = RedisStore(server.url, prefix=prefix)
    for sid in v1:
        loaded = store.load(sid)
        assert loaded is not None and loaded["revision"] == 3
        assert contents(loaded) == [f"old {sid}"]
        assert raw.exists(f"{prefix}s:{sid}".encode()) == 0
    assert store.load("braced") is None  # "{braced}" did not become "braced"
    assert sorted(store.list_ids()) == sorted(v1) and store.revision("plain") == 3
    assert raw.get(f"{prefix}s:notahash") == b"x"
    store.save("plain", doc("plain", ["new"], revision=4))
    raw.hset(f"{prefix}s:late", mapping={"rev": 1, "data": b"j{}"})
    again = RedisStore(server.url, prefix=prefix)  # the marker: no second scan
    assert again.load("late") is None and contents(again.load("plain")) == ["new"]
    store.close()
    again.close()


def test_revision_reads_one_field(store: RedisStore, raw: redis.Redis) -> None:
    assert store.revision("s") is None
    store.save("s", doc("s", ["a"], revision=1))
    assert store.revision("s") == 1
    raw.hset(store.doc_key("s"), "rev", "x")
    with pytest.raises(StoreCorruptError, match="'s'"):
        store.revision("s")


@pytest.mark.parametrize("ttl", [None, 60])
def test_read_log_and_load_is_read_log_then_load_in_one_trip(
    server: RedisServer, prefix: str, raw: redis.Redis, ttl: int | None
) -> None:
    """The restore path's single round trip answers what the two calls answer."""
    store = RedisStore(server.url, prefix=prefix, ttl=ttl)
    store.save("doc-only", doc("doc-only", ["a"]))
    store.append_log([("log-only", ("w", 1, '{"role":"user","content":"x"}'))])
    store.save("both", doc("both", ["b"]))
    store.append_log([("both", ("w", 2, '{"role":"user","content":"y"}'))])
    for sid in ("absent", "doc-only", "log-only", "both"):
        assert store.read_log_and_load(sid) == (store.read_log(sid), store.load(sid))
    assert store.read_log_and_load("both")[0] == [("w", 2, '{"role":"user","content":"y"}')]
    raw.set(store.doc_key("foreign"), b"not ours")
    with pytest.raises(StoreCorruptError, match="foreign"):
        store.read_log_and_load("foreign")
    store.close()
