"""Batched store paths (``save_many`` / ``load_many``) on every store, real backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jupyter_agentmem.errors import StoreCorruptError
from jupyter_agentmem.stores import MemoryStore, SQLiteStore
from jupyter_agentmem.stores.redis import RedisStore

from . import redis_server as server_helper
from .redis_server import RedisServer

redis_server = server_helper.redis_server  # the module-scoped fixture


def doc(sid: str, text: str = "hello") -> dict[str, Any]:
    return {
        "format": 1,
        "session_id": sid,
        "summary": "",
        "messages": [{"role": "user", "content": text}],
        "revision": 1,
    }


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-ttl"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        s: Any = SQLiteStore(tmp_path / "s.sqlite3")
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.start()
        ttl = 3600.0 if request.param == "redis-ttl" else None
        s = RedisStore(server.url, prefix=f"t{uuid.uuid4().hex[:8]}:", ttl=ttl)
    yield s
    s.close()


def test_load_many_returns_exactly_the_stored_documents(store: Any) -> None:
    ids = [f"s-{i}" for i in range(1234)] + ['quote\'s "id"/ü*:']
    items = [(sid, doc(sid, f"text {sid}")) for sid in ids]
    if isinstance(store, MemoryStore):  # it has no save_many
        for sid, data in items:
            store.save(sid, data)
    else:
        store.save_many(items)
    wanted = [*ids[::-1], "missing", ids[0]]  # any order, an unknown id, a repeat
    found = store.load_many(wanted)
    assert set(found) == set(ids)
    for sid in ids:
        assert found[sid] == store.load(sid) == doc(sid, f"text {sid}")
    assert store.load_many([]) == {}


def test_load_many_reports_the_stored_revision(store: Any) -> None:
    store.save("a", doc("a"))
    store.save("a", dict(doc("a", "second"), revision=2))
    assert store.load_many(["a"])["a"]["revision"] == 2
    assert store.load_many(["a"])["a"]["messages"][0]["content"] == "second"


def test_redis_load_many_names_a_foreign_value(redis_server: RedisServer) -> None:
    redis_server.start()
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_server.url, prefix=prefix)
    store.save("ok", doc("ok"))
    with redis.Redis.from_url(redis_server.url) as client:
        client.set(store.doc_key("bad"), b"not ours")
    with pytest.raises(StoreCorruptError, match="'bad'"):
        store.load_many(["ok", "bad"])
    assert store.load_many(["ok"])["ok"] == doc("ok")
    store.close()


def test_sqlite_load_many_names_a_damaged_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.save_many([("ok", doc("ok")), ("bad", doc("bad"))])
    store._db.execute("UPDATE sessions SET data = 'not json' WHERE id = 'bad'")
    with pytest.raises(StoreCorruptError, match=r"'bad'.*damaged"):
        store.load_many(["ok", "bad"])
    assert store.load_many(["ok"]) == {"ok": doc("ok")}
    store.close()


def test_read_logs_matches_read_log(store: Any) -> None:
    store.append_log([("a", ("w1", 1, '{"x":1}')), ("b", ("w1", 1, '"y"')), ("a", ("w2", 1, "2"))])
    found = store.read_logs(["b", "missing", "a", "a"])
    assert found == {"a": store.read_log("a"), "b": store.read_log("b")}
    assert found["a"] == [("w1", 1, '{"x":1}'), ("w2", 1, "2")]
    assert store.read_logs([]) == {}
