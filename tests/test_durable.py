"""Durable turns: the turn log survives an abandoned manager (a killed kernel), exactly.

A "crash" here is what SIGKILL does to a kernel: the manager is dropped without
``close``, its background writer stops with whatever it had not committed, and
a new manager opens the same file. Real SQLite files throughout; the kernel-level
``kill -9`` tests are in ``test_durable_kernel.py``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from jupyter_agentmem import SessionManager, StatePolicy
from jupyter_agentmem.memory.replay import load_with_log as load_document
from jupyter_agentmem.memory.summarize import Summarizer
from jupyter_agentmem.stores import MemoryStore, SQLiteStore
from jupyter_agentmem.stores.base import SessionStore

from . import redis_server as server_helper
from .redis_server import RedisServer

redis_server = server_helper.redis_server  # the module-scoped fixture


class Recorder(Summarizer):
    """Folds messages into a summary that lists their contents, so a test can count them."""

    is_local = True

    def summarize(
        self, messages: Sequence[dict[str, Any]], previous_summary: str, max_chars: int
    ) -> str:
        return " ".join([previous_summary, *(str(m["content"]) for m in messages)]).strip()


def policy() -> StatePolicy:
    return StatePolicy(max_recent=4, max_summary_chars=1_000_000, summarizer=Recorder())


def manager(store: SessionStore, **kwargs: Any) -> SessionManager:
    kwargs.setdefault("durable_turns", True)
    return SessionManager(max_sessions=2, store=store, policy=policy(), **kwargs)


def crash(m: SessionManager) -> None:
    """Abandon a manager as SIGKILL would: no flush, no close, the queue is lost."""
    assert m.journal is not None
    m.journal.abandon()
    m.store.close()  # the process is gone: its file handle too (nothing is written)


def contents(m: SessionManager, sid: str) -> list[str]:
    """Every message the session holds, folded or recent, oldest first."""
    state = m.get_or_create(sid)
    folded = state.summary.split()
    return folded + [str(msg["content"]) for msg in state.recent_messages]


def say(m: SessionManager, sid: str, *texts: str) -> None:
    m.get_or_create(sid).add_messages([{"role": "user", "content": t} for t in texts])


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SessionStore]:
    """Opens the same backing store again each call, as a new kernel process would."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "s.sqlite3")
    from jupyter_agentmem.stores.redis import RedisStore

    server: RedisServer = request.getfixturevalue("redis_server")
    server.resume()
    server.start()
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    return lambda: RedisStore(server.url, prefix=prefix)


@pytest.mark.parametrize("sid", ["a", "odd {id} with }braces{ and ünï 🚀"])
def test_turns_survive_a_crash_without_any_save(
    reopen: Callable[[], SessionStore], sid: str
) -> None:
    m = manager(reopen())
    say(m, sid, "q1", "a1")
    say(m, sid, "q2", "a2")
    assert m.sync_log(5.0)
    assert m.store.load(sid) is None  # never saved whole: only the log has it
    crash(m)
    store = reopen()
    assert sid in store.list_ids() and store.count() == 1  # type: ignore[attr-defined]
    again = manager(store)
    assert contents(again, sid) == ["q1", "a1", "q2", "a2"]
    again.close()


def test_restore_applies_the_log_on_top_of_the_last_save_without_duplicates(
    reopen: Callable[[], SessionStore],
) -> None:
    m = manager(reopen())
    say(m, "a", "q1", "a1")
    assert m.sync_log(5.0)
    m.flush()  # a whole save covers q1 a1 and compacts their entries
    assert m.store.read_log("a") == []
    say(m, "a", "q2", "a2")
    assert m.sync_log(5.0)
    assert [e[1] for e in m.store.read_log("a")] == [3, 4]
    crash(m)
    again = manager(reopen())
    assert contents(again, "a") == ["q1", "a1", "q2", "a2"]
    assert again.store.read_log("a") == []  # the replay was saved whole at once
    again.close()


def test_an_entry_reaching_the_log_after_the_save_that_holds_it_is_not_applied_twice() -> None:
    store = MemoryStore()
    m = manager(store)
    say(m, "a", "q1")
    assert m.sync_log(5.0)
    late = store.read_log("a")
    m.flush()
    store.append_log([("a", entry) for entry in late])  # the writer was slower than the save
    doc = load_document(store, "a")
    assert doc is not None and [x["content"] for x in doc["messages"]] == ["q1"]
    m.close()


def test_close_drains_the_log_and_compacts_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    m = manager(store, durable_turns=True)
    say(m, "a", *(f"m{i}" for i in range(50)))
    m.close()
    reopened = SQLiteStore(tmp_path / "s.sqlite3")
    assert reopened.read_log("a") == []
    assert reopened.load("a") is not None
    reopened.close()


def test_durable_turns_off_writes_no_log(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    m = manager(SQLiteStore(path), durable_turns=False)
    assert m.journal is None
    say(m, "a", "q1")
    assert m.store.read_log("a") == []  # type: ignore[attr-defined]
    m.close()


def test_durable_turns_can_be_switched_at_run_time(tmp_path: Path) -> None:
    m = manager(SQLiteStore(tmp_path / "s.sqlite3"))
    m.set_durable_turns(False)
    assert m.journal is None
    say(m, "a", "not logged")
    assert m.store.read_log("a") == []  # type: ignore[attr-defined]
    m.set_durable_turns(None)  # SQLite outlives the process: on
    say(m, "a", "logged")
    assert m.sync_log(5.0)
    # numbered while off (1), logged once on again (2)
    assert [e[1] for e in m.store.read_log("a")] == [2]  # type: ignore[attr-defined]
    m.close()


def test_turns_added_while_logging_was_off_survive_a_merge(tmp_path: Path) -> None:
    """The merge skips local messages the stored copy already holds by their numbers, so
    messages added with the log switched off must be numbered too, or they would be lost."""
    path = tmp_path / "s.sqlite3"
    a, b = manager(SQLiteStore(path)), manager(SQLiteStore(path))
    say(a, "s", "a1")
    a.flush()
    say(b, "s", "b1")
    a.set_durable_turns(False)
    say(a, "s", "a2", "a3")
    a.set_durable_turns(True)
    say(a, "s", "a4")
    b.flush()
    a.flush()  # conflicts with b's save: merged
    fresh = SessionManager(store=SQLiteStore(path), policy=policy(), durable_turns=False)
    assert contents(fresh, "s") == ["a1", "b1", "a2", "a3", "a4"]
    for m in (a, b, fresh):
        m.close()


def test_a_long_log_is_checkpointed_into_a_whole_save() -> None:
    store = MemoryStore()
    m = manager(store)
    assert m.journal is not None
    m.journal.checkpoint_every = 10
    for i in range(30):
        say(m, "a", f"m{i}")
        assert m.sync_log(5.0)
    deadline = time.monotonic() + 5.0  # the writer checkpoints just after its commit
    while len(store.read_log("a")) >= 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(store.read_log("a")) < 10  # compacted by checkpoints
    assert store.load("a") is not None
    m.close()


def test_a_full_queue_saves_the_session_whole_instead() -> None:
    store = MemoryStore()
    m = manager(store)
    assert m.journal is not None
    m.journal.capacity = 3
    with m.lock:  # hold the writer's checkpoint back while the queue overflows
        say(m, "a", *(f"m{i}" for i in range(10)))
    assert m.sync_log(5.0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the checkpoint runs on the writer thread
        doc = store.load("a")
        if doc is not None and doc["messages_total"] == 10:
            break
        time.sleep(0.01)
    crash(m)
    again = manager(store)
    assert contents(again, "a") == [f"m{i}" for i in range(10)]


def test_delete_wins_over_queued_log_entries() -> None:
    store = MemoryStore()
    m = manager(store)
    say(m, "a", "q1", "a1")
    assert m.delete("a")
    m.sync_log(5.0)
    assert store.read_log("a") == [] and "a" not in store.list_ids()
    crash(m)
    assert load_document(store, "a") is None


class CrashMachine(RuleBasedStateMachine):
    """Random add / compact / evict / flush / restore / crash: never lose an acknowledged
    message (added before a successful ``sync_log``), never duplicate one."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="agentmem-crash-")
        self.path = Path(self.dir) / "s.sqlite3"
        self.names = itertools.count()
        self.sent: dict[str, list[str]] = {"a": [], "b": []}
        self.acked: dict[str, int] = {"a": 0, "b": 0}

    @initialize()
    def start(self) -> None:
        self.m = manager(SQLiteStore(self.path))

    @rule(sid=st.sampled_from("ab"), n=st.integers(1, 4))
    def add(self, sid: str, n: int) -> None:
        texts = [f"m{next(self.names)}" for _ in range(n)]
        say(self.m, sid, *texts)
        self.sent[sid] += texts

    @rule()
    def sync(self) -> None:
        if self.m.sync_log(5.0):
            self.acked = {sid: len(texts) for sid, texts in self.sent.items()}

    @rule()
    def compact(self) -> None:
        self.m.compact_all()

    @rule(sid=st.sampled_from("ab"))
    def evict(self, sid: str) -> None:
        self.m.evict(sid)

    @rule()
    def flush(self) -> None:
        self.m.flush()
        self.acked = {sid: len(texts) for sid, texts in self.sent.items()}

    @rule(sid=st.sampled_from("ab"))
    def restore(self, sid: str) -> None:
        assert contents(self.m, sid) == self.sent[sid]

    @rule()
    def crash_and_reopen(self) -> None:
        crash(self.m)
        self.m = manager(SQLiteStore(self.path))
        for sid in "ab":
            got = contents(self.m, sid)
            assert len(set(got)) == len(got), f"duplicated: {got}"
            assert got == self.sent[sid][: len(got)], f"out of order or foreign: {got}"
            assert len(got) >= self.acked[sid], f"lost acknowledged messages: {got}"
            self.sent[sid] = got
            self.acked[sid] = len(got)

    @invariant()
    def no_duplicates_in_memory(self) -> None:
        for sid in self.m.live_ids():
            got = contents(self.m, sid)
            assert got == self.sent[sid]

    def teardown(self) -> None:
        if hasattr(self, "m"):
            crash(self.m)
        shutil.rmtree(self.dir, ignore_errors=True)


CrashMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_crash_at_any_point = CrashMachine.TestCase


# ----------------------------------------------------------- SQLite errors


def test_a_full_disk_says_so_and_keeps_the_sessions(tmp_path: Path) -> None:
    from jupyter_agentmem.errors import StoreFullError

    store = SQLiteStore(tmp_path / "s.sqlite3")
    store._db.execute("PRAGMA max_page_count = 12")  # a tiny disk, as far as SQLite knows
    with pytest.raises(StoreFullError, match=r"is full.*Free some space"):
        for i in range(50):
            store.save(f"s{i}", {"blob": "x" * 4000})
    with pytest.raises(StoreFullError, match="turn log"):
        store.append_log([("s", ("w", 1, '"' + "x" * 100_000 + '"'))])
    store.close()


@pytest.fixture()
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a store that this process cannot write (even as root)."""
    target = tmp_path / "ro"
    target.mkdir()
    SQLiteStore(target / "s.sqlite3").close()
    if os.geteuid() != 0:
        target.chmod(0o555)
        (target / "s.sqlite3").chmod(0o444)
        yield target
        target.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_read_only_store_says_what_to_do(readonly_dir: Path) -> None:
    from jupyter_agentmem.errors import StoreCorruptError, StoreReadOnlyError

    for name in ("s.sqlite3", "new.sqlite3", "sub/new.sqlite3"):
        with pytest.raises(StoreReadOnlyError, match=r"cannot be written.*writable") as info:
            SQLiteStore(readonly_dir / name)
        assert not isinstance(info.value, StoreCorruptError), name


def test_a_kernel_restoring_another_live_kernels_log_does_not_duplicate_its_turns(
    reopen: Callable[[], SessionStore],
) -> None:
    """Shared session: B's logged but unsaved turns are replayed by A; B's later save
    must not append them again (the merge skips what the stored copy's marks cover)."""
    b = manager(reopen())
    say(b, "team:x", "b1", "b2")
    assert b.sync_log(5.0)
    a = manager(reopen())
    assert contents(a, "team:x") == ["b1", "b2"]  # replayed and saved whole
    say(a, "team:x", "a1")
    a.flush()
    say(b, "team:x", "b3")
    b.flush()  # conflicts with A's save: merged
    assert b.stats().conflicts_merged >= 1
    fresh = SessionManager(store=reopen(), policy=policy(), durable_turns=False)
    assert contents(fresh, "team:x") == ["b1", "b2", "a1", "b3"]
    for m in (a, b, fresh):
        m.close()
