"""RedisStore against a real local 3-master Redis Cluster (``redis+cluster://``).

The standalone store tests run here again, unchanged, with the cluster in place
of the single server (the ``server``/``raw`` fixtures below); what differs in
Cluster mode (per-session saves in a batch, the index in its own slot) has its
own tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster as ClusterClient

from jupyter_agentmem.errors import SessionConflictError
from jupyter_agentmem.stores import open_store
from jupyter_agentmem.stores.redis import RedisStore, cluster_url

from . import redis_cluster as cluster_helper
from .redis_cluster import RedisCluster
from .test_redis_store import (  # the same tests, now against the cluster
    TRICKY_IDS,
    contents,
    doc,
    manager,
    test_a_retried_write_that_already_landed_is_not_a_conflict,
    test_a_second_conflict_during_one_save_loses_no_turn,
    test_large_documents_are_compressed_and_small_ones_are_plain_json,
    test_list_count_delete_with_glob_characters_in_ids,
    test_revision_rule_between_two_writers,
    test_round_trip_of_arbitrary_ids_and_documents,
    test_ttl_expires_idle_sessions_and_access_refreshes_it,
    test_two_managers_continuing_one_session_lose_no_turn,
    test_two_processes_share_sessions_through_the_server,
)

pytestmark = pytest.mark.redis
redis_cluster = cluster_helper.redis_cluster

__all__ = [
    "test_a_retried_write_that_already_landed_is_not_a_conflict",
    "test_a_second_conflict_during_one_save_loses_no_turn",
    "test_large_documents_are_compressed_and_small_ones_are_plain_json",
    "test_list_count_delete_with_glob_characters_in_ids",
    "test_revision_rule_between_two_writers",
    "test_round_trip_of_arbitrary_ids_and_documents",
    "test_ttl_expires_idle_sessions_and_access_refreshes_it",
    "test_two_managers_continuing_one_session_lose_no_turn",
    "test_two_processes_share_sessions_through_the_server",
]


@pytest.fixture
def server(redis_cluster: RedisCluster) -> RedisCluster:
    return redis_cluster


@pytest.fixture
def prefix() -> str:
    return f"c{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def store(server: RedisCluster, prefix: str) -> Iterator[RedisStore]:
    s = RedisStore(server.url, prefix=prefix)
    assert s.cluster
    yield s
    s.close()


@pytest.fixture
def raw(server: RedisCluster) -> Iterator[ClusterClient]:
    plain = cluster_url(server.url)
    assert plain is not None
    client = ClusterClient.from_url(plain)
    yield client
    client.close()


def test_a_sessions_keys_share_one_slot_and_sessions_spread_over_the_nodes(
    store: RedisStore, raw: ClusterClient
) -> None:
    ids = [f"user-{i}" for i in range(30)]
    for sid in ids:
        store.save(sid, doc(sid, [sid], revision=1))
    slots = {raw.keyslot(store.doc_key(sid)) for sid in ids}
    assert raw.keyslot(store.doc_key("x")) == raw.keyslot(b"other:l:{x}")  # E's turn log key
    nodes = {raw.get_node_from_key(store.doc_key(sid)).port for sid in ids}
    assert len(slots) > 20 and len(nodes) == 3  # really spread: listing is not one node
    assert sorted(store.list_ids()) == sorted(ids) and store.count() == 30
    assert isinstance(open_store(store.url.replace("***", "")), RedisStore)


def test_save_many_in_a_cluster_stops_at_the_conflicting_session(store: RedisStore) -> None:
    store.save("b", doc("b", ["b1"], revision=1))
    batch = [("a", doc("a", ["a1"], revision=1)), ("b", doc("b", ["b2"], revision=1))]
    with pytest.raises(SessionConflictError, match="'b'"):
        store.save_many(batch)
    assert contents(store.load("a")) == ["a1"] and contents(store.load("b")) == ["b1"]
    assert sorted(store.list_ids()) == ["a", "b"] and store.count() == 2


def test_tricky_ids_live_in_their_own_slots(store: RedisStore, raw: ClusterClient) -> None:
    for sid in TRICKY_IDS:
        store.save(sid, doc(sid, [sid]))
        assert raw.exists(store.doc_key(sid)) == 1
    assert sorted(store.list_ids()) == sorted(TRICKY_IDS)
    mgr = manager(store, max_sessions=3)
    usable = [sid for sid in TRICKY_IDS if "\ud83d" not in sid]  # the manager refuses those
    for sid in usable:
        mgr.get_or_create(sid).add_message({"role": "user", "content": "more"})
    mgr.flush()
    for sid in usable:
        assert contents(store.load(sid)) == [sid, "more"]
    mgr.close()


def test_revision_is_read_alone(store: RedisStore) -> None:
    assert store.revision("none") is None
    store.save("s", doc("s", ["a"], revision=1))
    store.save("s", doc("s", ["a", "b"], revision=2))
    assert store.revision("s") == 2


def test_the_turn_log_works_in_a_cluster(store: RedisStore, raw: ClusterClient) -> None:
    ids = [f"log-{i}" for i in range(6)]  # several slots, several nodes
    store.append_log([(sid, ("w1", n, f'{{"n":{n}}}')) for sid in ids for n in (1, 2)])
    assert raw.keyslot(store._log_key("log-0")) == raw.keyslot(store.doc_key("log-0"))
    assert sorted(store.list_ids()) == ids and store.count() == 6  # log-only sessions listed
    assert store.read_log("log-3") == [("w1", 1, '{"n":1}'), ("w1", 2, '{"n":2}')]
    saved = dict(doc("log-3", ["x"], revision=1), log_marks={"w1": 1})
    store.save("log-3", saved)  # compaction drops what the document covers
    assert store.read_log("log-3") == [("w1", 2, '{"n":2}')]
    assert store.delete("log-4") and store.read_log("log-4") == []
    assert sorted(store.list_ids()) == [i for i in ids if i != "log-4"]
