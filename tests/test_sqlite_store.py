"""SQLiteStore on real files: exact round trips, migrations, damaged and foreign files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_agentmem import ConversationState, SessionManager
from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError
from jupyter_agentmem.stores import MemoryStore, SQLiteStore, open_store
from jupyter_agentmem.stores.sqlite import MIGRATIONS

from .strategies import messages

session_ids = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SQLiteStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sid=session_ids, msgs=messages, summary=st.text(max_size=200))
def test_round_trip_of_arbitrary_ids_and_messages(
    store: SQLiteStore, sid: str, msgs: list[dict[str, Any]], summary: str
) -> None:
    state = ConversationState(sid)
    state.add_messages(msgs)
    doc = state.to_dict()
    doc["summary"] = summary
    doc.pop("revision")
    store.save(sid, doc)
    loaded = store.load(sid)
    assert loaded is not None
    loaded.pop("revision", None)
    assert loaded == doc
    assert ConversationState.from_dict(loaded).recent_messages == msgs
    assert sid in store.list_ids()


def test_file_uses_wal_and_records_migrations(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    assert store.migrations == sorted(name for name, _ in MIGRATIONS)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_an_old_database_is_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    name, first = MIGRATIONS[0]
    first(db)
    db.execute("CREATE TABLE agentmem_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    db.execute("INSERT INTO agentmem_migrations VALUES (?, 0)", (name,))
    db.execute(
        "INSERT INTO sessions VALUES ('old', 1, 0, ?)",
        (json.dumps(ConversationState("old").to_dict()),),
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    assert store.migrations == sorted(n for n, _ in MIGRATIONS)
    assert store.load("old") is not None
    store.close()
    SQLiteStore(path).close()  # idempotent: opening again applies nothing twice
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM agentmem_migrations").fetchone()[0] == len(MIGRATIONS)
    index = db.execute(
        "SELECT name FROM sqlite_master WHERE type='index' AND name=?", ("sessions_updated_at",)
    ).fetchone()
    assert index is not None


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite3"
    garbage = b"this is not sqlite at all" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreCorruptError, match=r"left\s+untouched"):
        SQLiteStore(path)
    assert path.read_bytes() == garbage


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(StoreCorruptError, match="another application"):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["invoices"]


def test_a_damaged_row_fails_alone(store: SQLiteStore) -> None:
    store.save("good", ConversationState("good").to_dict() | {"revision": 1})
    store._db.execute("INSERT INTO sessions VALUES ('bad', 1, 0, '{not json')")
    with pytest.raises(StoreCorruptError, match=r"'bad'.*damaged"):
        store.load("bad")
    assert store.load("good") is not None
    manager = SessionManager(store=store)
    with pytest.raises(StoreCorruptError):
        manager.get_or_create("bad")
    assert manager.get_or_create("good").session_id == "good"
    manager.close()


def test_revisions_detect_a_concurrent_writer(store: SQLiteStore) -> None:
    doc = ConversationState("s").to_dict()
    store.save("s", doc | {"revision": 1})
    store.save("s", doc | {"revision": 2})
    with pytest.raises(SessionConflictError, match="revision 2"):
        store.save("s", doc | {"revision": 2})
    assert store.load("s")["revision"] == 2  # type: ignore[index]


def test_two_managers_on_one_file_merge_instead_of_overwriting(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    one, two = SessionManager(store=SQLiteStore(path)), SessionManager(store=SQLiteStore(path))
    one.get_or_create("s").add_message({"role": "user", "content": "hello"})
    one.flush()
    two.get_or_create("s").add_message({"role": "user", "content": "from two"})
    one.get_or_create("s").add_message({"role": "user", "content": "from one"})
    two.flush()
    one.flush()
    third = SessionManager(store=SQLiteStore(path))
    fresh = third.get_or_create("s")
    assert sorted(m["content"] for m in fresh.recent_messages) == ["from one", "from two", "hello"]
    for manager in (one, two, third):
        manager.close()


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    sqlite_store = open_store(f"sqlite:///{tmp_path}/x.sqlite3")
    assert isinstance(sqlite_store, SQLiteStore)
    assert sqlite_store.path == tmp_path / "x.sqlite3"
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store("mongodb://nope")


def test_default_store_lives_in_the_jupyter_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path))
    manager = SessionManager()
    assert isinstance(manager.store, SQLiteStore)
    assert manager.store.path == tmp_path / "agentmem" / "sessions.sqlite3"
    manager.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sid=session_ids, msgs=messages, summary=st.text(max_size=200))
def test_compressed_documents_round_trip_exactly(
    tmp_path: Path, sid: str, msgs: list[dict[str, Any]], summary: str
) -> None:
    """Every document as a zlib BLOB (threshold 0): lone surrogates, any text, back exactly."""
    store = SQLiteStore(tmp_path / "z.sqlite3", compress_threshold=0)
    try:
        state = ConversationState(sid)
        state.add_messages(msgs)
        doc = state.to_dict() | {"summary": summary}
        doc.pop("revision")
        store.delete(sid)
        store.save(sid, doc)
        loaded = store.load(sid)
        assert loaded is not None and loaded.pop("revision") >= 1
        assert loaded == doc
    finally:
        store.close()


def big_document(sid: str) -> dict[str, Any]:
    state = ConversationState(sid)
    state.add_messages([{"role": "user", "content": f"question {i} " * 80} for i in range(8)])
    doc = state.to_dict()
    doc.pop("revision")  # written unconditionally
    return doc


def stored_value(store: SQLiteStore, sid: str) -> Any:
    return store._db.execute("SELECT data FROM sessions WHERE id = ?", (sid,)).fetchone()[0]


def test_large_documents_are_stored_packed_small_ones_as_json_text(store: SQLiteStore) -> None:
    big = big_document("big")
    store.save("big", big)
    store.save("small", ConversationState("small").to_dict() | {"revision": 1})
    packed = stored_value(store, "big")
    assert isinstance(packed, bytes) and packed[:1] == b"z"
    assert len(packed) < len(json.dumps(big)) / 5  # repetitive text packs well
    assert json.loads(stored_value(store, "small"))["session_id"] == "small"
    loaded = store.load("big")
    assert loaded is not None and loaded["messages"] == big["messages"]
    unpacked = SQLiteStore(store.path, compress_threshold=10**9)  # compression off: text
    unpacked.save("big", dict(loaded, revision=loaded["revision"] + 1))
    assert isinstance(stored_value(unpacked, "big"), str)
    unpacked.close()


def test_rows_written_as_json_text_before_compression_still_load(store: SQLiteStore) -> None:
    """Files from earlier versions hold every document as JSON text."""
    big = big_document("old")
    store._db.execute(
        "INSERT INTO sessions VALUES ('old', 3, 0, ?)", (json.dumps(big, ensure_ascii=False),)
    )
    loaded = store.load("old")
    assert loaded is not None and loaded["messages"] == big["messages"]
    assert loaded["revision"] == 3


@pytest.mark.parametrize("blob", [b"z" + b"\x00garbage", b"q{}", b""])
def test_a_damaged_blob_fails_alone(store: SQLiteStore, blob: bytes) -> None:
    store.save("good", big_document("good"))
    store._db.execute("INSERT INTO sessions VALUES ('bad', 1, 0, ?)", (blob,))
    with pytest.raises(StoreCorruptError, match=r"'bad'.*damaged"):
        store.load("bad")
    assert store.load("good") is not None
    assert list(store.load_many(["good"])) == ["good"]


def test_compress_threshold_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compress_threshold"):
        SQLiteStore(tmp_path / "x.sqlite3", compress_threshold=-1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.one_of(st.none(), st.integers(-1, 5))),
        max_size=12,
    )
)
def test_the_revision_rule_is_memory_stores_for_any_sequence_of_saves(
    store: SQLiteStore, steps: list[tuple[str, int | None]]
) -> None:
    """The one-statement save (a guarded UPDATE, or INSERT for revision 1) accepts and
    refuses exactly what the reference store does, and a refused save writes nothing."""
    for sid in ("a", "b"):
        store.delete(sid)
    reference = MemoryStore()
    for n, (sid, revision) in enumerate(steps):
        doc = ConversationState(sid).to_dict() | {"summary": f"step {n}"}
        doc = doc if revision is None else doc | {"revision": revision}
        outcomes = []
        for target in (reference, store):
            try:
                target.save(sid, dict(doc))
                outcomes.append("saved")
            except SessionConflictError:
                outcomes.append("conflict")
        assert outcomes[0] == outcomes[1], (n, sid, revision)
        for key in ("a", "b"):
            want, got = reference.load(key), store.load(key)
            assert (want and (want["revision"], want["summary"])) == (
                got and (got["revision"], got["summary"])
            )


def test_read_log_and_load_is_read_log_then_load(store: SQLiteStore) -> None:
    assert store.read_log_and_load("s") == ([], None)
    store.append_log([("s", ("w", 1, '{"role":"user","content":"hi"}'))])
    assert store.read_log_and_load("s") == ([("w", 1, '{"role":"user","content":"hi"}')], None)
    store.save("s", ConversationState("s").to_dict() | {"revision": 1, "log_marks": {"w": 1}})
    entries, doc = store.read_log_and_load("s")
    assert (entries, doc) == (store.read_log("s"), store.load("s")) and entries == []
    store._db.execute("UPDATE sessions SET data = '{not json' WHERE id = 's'")
    with pytest.raises(StoreCorruptError, match=r"'s'.*damaged"):
        store.read_log_and_load("s")
