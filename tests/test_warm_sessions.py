"""Warm sessions: an instance holding a session in memory never serves a stale copy.

Two SessionManagers (two "server instances") share one store: a real
redis-server, one SQLite file, or one MemoryStore. ``refresh`` costs one
revision read per turn and reloads only when the other instance wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_agentmem.errors import StoreError
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.stores import MemoryStore, SQLiteStore
from jupyter_agentmem.stores.base import SessionStore
from jupyter_agentmem.stores.redis import RedisStore

from . import redis_server as server_helper
from .redis_server import RedisServer

redis_server = server_helper.redis_server


class CountingStore:
    """A real store, with its calls counted (what one turn costs in round trips)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


@pytest.fixture(params=["redis", "sqlite", "memory"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []
    shared = MemoryStore()
    prefix = f"w{uuid.uuid4().hex[:6]}:"

    def make() -> Any:
        inner: SessionStore
        if request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            server.start()
            inner = RedisStore(server.url, prefix=prefix)
        elif request.param == "sqlite":
            inner = SQLiteStore(str(tmp_path / "shared.sqlite3"))
        else:
            inner = shared
        made.append(inner)
        return CountingStore(inner)

    yield make
    for store in made:
        store.close()


def manager(store: Any) -> SessionManager:
    return SessionManager(store=store, max_recent=10_000, max_recent_bytes=10**8)


def texts(mgr: SessionManager, sid: str) -> list[str]:
    return [m["content"] for m in mgr.get_or_create(sid).recent_messages]


def say(mgr: SessionManager, sid: str, text: str, *, save: bool = True) -> None:
    mgr.refresh(sid)  # what the server does at the start of every turn
    mgr.get_or_create(sid).add_message({"role": "user", "content": text})
    if save:
        mgr.flush()


def test_a_conversation_hopping_between_instances_sees_every_turn(
    stores: Callable[[], Any],
) -> None:
    a, b = manager(stores()), manager(stores())
    for i in range(6):  # A, B, A, B ... each keeps the session warm in memory
        say(a if i % 2 == 0 else b, "s", f"t{i}")
    assert a.refresh("s") and not b.refresh("s")  # B wrote last
    assert texts(a, "s") == texts(b, "s") == [f"t{i}" for i in range(6)]
    assert a.sharing["stale_reloads"] == 3 and b.sharing["stale_reloads"] == 2
    assert a.stats().conflicts_merged == b.stats().conflicts_merged == 0
    a.close()
    b.close()


def test_without_the_check_an_instance_serves_its_stale_copy(stores: Callable[[], Any]) -> None:
    a, b = manager(stores()), manager(stores())
    say(a, "s", "a0")
    say(b, "s", "b1")
    assert texts(a, "s") == ["a0"]  # stale: what the check exists for
    assert a.refresh("s") and texts(a, "s") == ["a0", "b1"]
    a.close()
    b.close()


def test_a_fresh_copy_costs_one_revision_read_and_is_kept(stores: Callable[[], Any]) -> None:
    store = stores()
    a = manager(store)
    say(a, "s", "a0")
    state = a.get_or_create("s")
    store.calls.clear()
    assert not a.refresh("s")
    assert store.calls == {"revision": 1}  # no document transferred
    assert a.get_or_create("s") is state and state.is_loaded
    assert not a.refresh("never-seen") and store.calls == {"revision": 1}  # not live: no call
    a.close()


def test_unsaved_turns_of_a_stale_copy_are_merged_not_dropped(stores: Callable[[], Any]) -> None:
    a, b = manager(stores()), manager(stores())
    say(a, "s", "a0")
    say(b, "s", "b1")
    a.get_or_create("s").add_message({"role": "user", "content": "a-unsaved"})
    assert a.refresh("s")
    assert texts(a, "s") == ["a0", "b1", "a-unsaved"]
    say(b, "s", "b2")
    assert texts(b, "s") == ["a0", "b1", "a-unsaved", "b2"]
    a.close()
    b.close()


def test_flush_of_one_session_saves_only_it(stores: Callable[[], Any]) -> None:
    store = stores()
    a = manager(store)
    for sid in ("x", "y"):
        a.get_or_create(sid).add_message({"role": "user", "content": sid})
    store.calls.clear()
    assert a.flush(["x", "not-live"]) == 1
    assert store.calls.get("save") == 1 and store.revision("y") is None
    assert store.revision("x") == 1
    a.close()


def test_a_session_created_while_redis_is_frozen_is_merged_when_it_returns(
    redis_server: RedisServer,
) -> None:
    redis_server.start()
    prefix = f"o{uuid.uuid4().hex[:6]}:"
    b = manager(RedisStore(redis_server.url, prefix=prefix))
    say(b, "s", "b0")  # the session exists in Redis, written by instance B
    store = RedisStore(redis_server.url, prefix=prefix, socket_timeout=0.3)
    a = SessionManager(
        store=store,
        max_recent=10_000,
        max_recent_bytes=10**8,
        create_offline=True,
        retry_after=0.1,
    )
    strict = manager(RedisStore(redis_server.url, prefix=prefix, socket_timeout=0.3))
    redis_server.pause(1.5)
    try:
        with pytest.raises(StoreError):  # the default stays: refuse rather than guess
            strict.get_or_create("s")
        a.get_or_create("s").add_message({"role": "user", "content": "a-offline"})
        assert a.flush() == 0 and a.sharing["offline_creates"] == 1
    finally:
        redis_server.resume()
    assert a.flush() == 1
    assert texts(b, "s") == ["b0"] and b.refresh("s")
    assert texts(b, "s") == ["b0", "a-offline"] and a.stats().conflicts_merged == 1
    for mgr in (a, b, strict):
        mgr.close()
