"""Fault injection for the memory engine: slow, failing and interrupted stores, hostile
input, budgets smaller than one session (issue 16, items 1-7).

``FaultStore`` wraps a real store (MemoryStore, SQLite file, Redis server) and can
delay every call, fail it for chosen session ids, or raise ``KeyboardInterrupt``
just before or just after its n-th call, as Ctrl-C does in a kernel. Hypothesis
picks the interrupted call; the checks are that nothing is lost, nothing is
duplicated and the manager's books still match what it holds.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jupyter_agentmem import ConversationState, SessionManager, StatePolicy, Summarizer
from jupyter_agentmem.errors import InvalidMessageError
from jupyter_agentmem.stores import MemoryStore, SessionStore, SQLiteStore

from . import redis_server as server_helper
from .redis_server import RedisServer

redis_server = server_helper.redis_server  # module-scoped real redis-server


def u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


class FaultStore:
    """A real store behind a switchboard of faults (delay, per-id failure, Ctrl-C)."""

    def __init__(self, inner: SessionStore, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.calls = 0
        self.interrupt_at: int | None = None  # index of the call that gets Ctrl-C
        self.interrupt_after = False  # True: the call lands, then Ctrl-C
        self.fail_ids: set[str] = set()
        self.log: list[str] = []

    def _call(self, name: str, sid: str | None, run: Callable[[], Any]) -> Any:
        index = self.calls
        self.calls += 1
        self.log.append(f"{name}({sid})" if sid is not None else name)
        hit = self.interrupt_at == index
        if hit and not self.interrupt_after:
            raise KeyboardInterrupt(f"before {name} #{index}")
        if self.delay:
            time.sleep(self.delay)
        if sid is not None and sid in self.fail_ids and name == "save":
            raise UnicodeEncodeError("utf-8", sid, 0, 1, "injected per-document failure")
        result = run()
        if hit:
            raise KeyboardInterrupt(f"after {name} #{index}")
        return result

    def save(self, session_id: str, data: dict[str, Any]) -> None:
        self._call("save", session_id, lambda: self.inner.save(session_id, data))

    def load(self, session_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call(
            "load", session_id, lambda: self.inner.load(session_id)
        )
        return result

    def delete(self, session_id: str) -> bool:
        return bool(self._call("delete", session_id, lambda: self.inner.delete(session_id)))

    def list_ids(self) -> list[str]:
        ids: list[str] = self._call("list_ids", None, self.inner.list_ids)
        return ids

    def close(self) -> None:
        self.inner.close()


def manager_on(store: Any, **kwargs: Any) -> SessionManager:
    """A manager that never compacts, so every message can be counted."""
    kwargs.setdefault("max_sessions", 1)
    return SessionManager(store=store, max_recent=10_000, max_recent_bytes=10**8, **kwargs)


def contents(state: ConversationState) -> list[str]:
    return [m["content"] for m in state.recent_messages]


def estimated(m: SessionManager) -> int:
    return m.stats().estimated_bytes


def books_balance(m: SessionManager) -> bool:
    """The manager's byte total equals the sum over the live sessions it lists."""
    rows = m.largest_sessions(10_000)
    return estimated(m) == sum(row["estimated_bytes"] for row in rows) and len(rows) == len(m)


def run_with_timeout(target: Callable[[], Any], seconds: float) -> threading.Thread:
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    return worker


# ---------------------------------------------------------------- 1. livelock
def test_a_session_larger_than_the_budget_stays_usable_and_never_spins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultStore(MemoryStore())
    m = SessionManager(
        max_memory_bytes=64 * 1024, store=store, max_recent_bytes=1 << 20, max_recent=1000
    )
    s = m.get_or_create("a")
    done: list[bool] = []

    def scenario() -> None:
        s.add_message(u("x" * 70_000))
        s.add_message(u("next"))
        s.add_message(u("again"))
        done.append(True)

    worker = run_with_timeout(scenario, 5)
    assert done and not worker.is_alive(), f"livelock: {store.calls} store calls"
    assert store.calls < 10  # no save/restore cycle per message
    assert contents(s) == ["x" * 70_000, "next", "again"] and s.is_loaded
    assert m.live_ids() == ["a"]  # over budget, in memory
    warned = [r for r in caplog.records if "larger than" in r.getMessage()]
    assert len(warned) == 1
    other = m.get_or_create("b")  # another session still evicts the big one when asked
    other.add_message(u("small"))
    assert m.live_ids() == ["b"] and contents(m.get_or_create("a"))[-1] == "again"


# ------------------------------------------------------ 2. Ctrl-C during a write
def _two_sessions(store: FaultStore) -> tuple[SessionManager, ConversationState]:
    m = manager_on(store)
    a = m.get_or_create("a")
    a.add_messages([u("q1"), u("a1")])
    return m, a


def test_ctrl_c_after_an_eviction_write_landed_duplicates_nothing() -> None:
    store = FaultStore(MemoryStore())
    m, a = _two_sessions(store)
    store.interrupt_at, store.interrupt_after = store.calls + 1, True  # load(b), then save(a)
    with pytest.raises(KeyboardInterrupt):
        m.get_or_create("b")
    store.interrupt_at = None
    a.add_message(u("q2"))
    m.flush()
    fresh = manager_on(store.inner).get_or_create("a")
    assert contents(fresh) == ["q1", "a1", "q2"]


def test_ctrl_c_before_an_eviction_write_leaves_the_session_listed_and_saved() -> None:
    store = FaultStore(MemoryStore())
    m, _ = _two_sessions(store)
    store.interrupt_at, store.interrupt_after = store.calls + 1, False
    with pytest.raises(KeyboardInterrupt):
        m.get_or_create("b")
    store.interrupt_at = None
    assert "a" in [row["session_id"] for row in m.list_sessions()]
    m.close()
    assert contents(manager_on(store.inner).get_or_create("a")) == ["q1", "a1"]


Op = tuple[str, str]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "get", "evict", "flush", "delete", "replace", "hold"]),
        st.sampled_from(["a", "b", "c"]),
    ),
    min_size=1,
    max_size=12,
)


class Model:
    """What the sessions must contain, whatever was interrupted."""

    def __init__(self) -> None:
        self.expected: dict[str, list[str]] = {}
        self.counter = 0

    def message(self, sid: str) -> str:
        self.counter += 1
        return f"{sid}{self.counter}"


def _check(m: SessionManager, model: Model, maybe_deleted: set[str]) -> None:
    listed = {row["session_id"] for row in m.list_sessions()}
    for sid, texts in model.expected.items():
        if sid in maybe_deleted and sid not in listed:
            continue  # an interrupted delete may have won: then it is gone everywhere
        assert sid in listed, f"{sid} missing from list_sessions()"
        state = m.get(sid)
        assert state is not None
        assert contents(state) == texts, sid
    assert books_balance(m)
    assert m.stats().sessions_saving == 0  # no write left counted after an interrupt


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=OPS, data=st.data(), point=st.integers(0, 2), after=st.booleans())
def test_ctrl_c_at_any_store_call_loses_and_duplicates_nothing(
    ops: list[Op], data: st.DataObject, point: int, after: bool
) -> None:
    """Ctrl-C before or after the ``point``-th store call of one operation."""
    at = data.draw(st.integers(0, len(ops) - 1), label="interrupted operation")
    store = FaultStore(MemoryStore())
    target = FaultStore(MemoryStore())
    m = manager_on(store, max_sessions=2)
    model = Model()
    held: dict[str, ConversationState] = {}
    for sid in "ab":  # something to evict and restore from the start
        text = model.message(sid)
        m.get_or_create(sid).add_message(u(text))
        model.expected.setdefault(sid, []).append(text)
    store.interrupt_at = target.interrupt_at = None
    maybe_deleted: set[str] = set()
    armed = [store, target]
    for fs in armed:
        fs.interrupt_after = after
    for index, (name, sid) in enumerate(ops):
        for fs in armed:  # one interrupt per example, at the chosen store call
            fs.interrupt_at = fs.calls + point if index == at else None
        try:
            if name == "add":  # restores and evicts; the message goes in before eviction
                text = model.message(sid)
                state = m.get_or_create(sid)
                state.add_message(u(text))
                model.expected.setdefault(sid, []).append(text)
            elif name == "get":
                m.get_or_create(sid)
                model.expected.setdefault(sid, [])
            elif name == "hold":
                held[sid] = m.get_or_create(sid)
                model.expected.setdefault(sid, [])
            elif name == "evict":
                m.evict(sid)
            elif name == "flush":
                m.flush()
            elif name == "delete":
                maybe_deleted.add(sid)
                m.delete(sid)
                model.expected.pop(sid, None)
                maybe_deleted.discard(sid)
                held.pop(sid, None)
            elif name == "replace" and m.store is store:
                m.replace_store(target)
        except KeyboardInterrupt:
            event(f"Ctrl-C during {name}")
            for fs in armed:
                fs.interrupt_at = None
            if name == "add" and sid in model.expected:
                # interrupted before or after the append: find out which, once
                state = m.get(sid)
                if state is not None and contents(state)[-1:] == [text]:
                    model.expected[sid].append(text)
            if name == "delete":
                m.delete(sid)  # the user runs it again; it must now win
                model.expected.pop(sid, None)
                maybe_deleted.discard(sid)
                held.pop(sid, None)
            if name == "replace":
                m.replace_store(target)  # and again: nothing twice
        for fs in armed:
            fs.interrupt_at = None
        _check(m, model, maybe_deleted)
    m.close()
    again = manager_on(m.store.inner if isinstance(m.store, FaultStore) else m.store)
    for sid, texts in model.expected.items():
        assert contents(again.get_or_create(sid)) == texts


# --------------------------------------------------- 3. replace_store merges
def _writer_b(store: SessionStore) -> None:
    b = manager_on(store)
    b.get_or_create("default").add_message(u("B default"))
    b.get_or_create("notes").add_message(u("B note"))
    b.close()


def _writer_a(path: Path) -> SessionManager:
    a = manager_on(SQLiteStore(path), max_sessions=1)
    a.get_or_create("notes").add_message(u("A note"))
    d = a.get_or_create("default")  # evicts notes
    d.add_message(u("A turn 1"))
    a.flush()
    d.add_message(u("A turn 2"))
    return a


def _assert_merged(store: SessionStore) -> None:
    check = manager_on(store, max_sessions=10)
    assert contents(check.get_or_create("notes")) == ["B note", "A note"]
    assert contents(check.get_or_create("default")) == ["B default", "A turn 1", "A turn 2"]


def test_replace_store_merges_with_another_writers_sessions_on_sqlite(tmp_path: Path) -> None:
    _writer_b(SQLiteStore(tmp_path / "shared.sqlite3"))
    a = _writer_a(tmp_path / "a.sqlite3")
    target = SQLiteStore(tmp_path / "shared.sqlite3")
    a.replace_store(target)
    a.replace_store(target)  # running it twice adds nothing twice
    a.flush()
    _assert_merged(SQLiteStore(tmp_path / "shared.sqlite3"))


def test_replace_store_merges_with_another_writers_sessions_on_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from jupyter_agentmem.stores.redis import RedisStore

    redis_server.start()
    prefix = f"rs{time.time_ns()}:"
    _writer_b(RedisStore(redis_server.url, prefix=prefix))
    a = _writer_a(tmp_path / "a.sqlite3")
    a.replace_store(RedisStore(redis_server.url, prefix=prefix))
    a.close()
    _assert_merged(RedisStore(redis_server.url, prefix=prefix))


# ------------------------------------------------- 4. delete during an eviction
def test_a_delete_racing_an_in_flight_eviction_wins() -> None:
    store = FaultStore(MemoryStore())
    m = manager_on(store, max_sessions=10)
    m.get_or_create("x").add_message(u("secret"))
    store.delay = 0.3
    worker = threading.Thread(target=m.evict, args=("x",))
    worker.start()
    time.sleep(0.1)  # the eviction's write is in flight
    store.delay = 0.0
    assert m.delete("x")
    worker.join(5)
    assert store.inner.load("x") is None
    assert contents(m.get_or_create("x")) == []


# ------------------------------------------------- 5. what a store cannot encode
HOSTILE = [
    "report\udcff.csv",
    "\ud800",
    "tail \udfff",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_no_store_can_encode_is_refused_at_add_time(text: str, tmp_path: Path) -> None:
    m = manager_on(SQLiteStore(tmp_path / "s.sqlite3"))
    state = m.get_or_create("a")
    with pytest.raises(InvalidMessageError, match="surrogate"):
        state.add_message(u(text))
    with pytest.raises(InvalidMessageError, match="surrogate"):
        state.add_message({"role": "tool", "tool_call_id": "c", "content": "ok", text: 1})
    with pytest.raises(ValueError, match="surrogate"):
        m.get_or_create(text)  # as a session id
    assert contents(state) == []


def test_a_huge_int_is_refused_at_add_time() -> None:
    state = ConversationState("a")
    with pytest.raises(InvalidMessageError, match="digits"):
        state.add_message({"role": "user", "content": "n", "n": 10**5000})
    assert state.recent_messages == []


def test_tool_output_with_undecodable_file_names_is_kept_escaped(tmp_path: Path) -> None:
    m = manager_on(SQLiteStore(tmp_path / "s.sqlite3"))
    state = m.get_or_create("a")
    call = {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
    state.add_message({"role": "assistant", "content": None, "tool_calls": [call]})
    stored = state.add_tool_result("c1", "report\udcff.csv\nother.csv")
    assert stored["content"] == "report\\udcff.csv\nother.csv"  # escaped, readable
    m.get_or_create("b")  # evicts a to SQLite
    assert m.get_or_create("a").recent_messages[-1] == stored


def test_one_document_the_store_rejects_does_not_stall_the_others() -> None:
    store = FaultStore(MemoryStore())
    m = manager_on(store, max_sessions=2, retry_after=60)
    store.fail_ids = {"bad"}
    m.get_or_create("bad").add_message(u("x"))
    for sid in "cdefgh":
        m.get_or_create(sid).add_message(u(sid))
    assert len(m.live_ids()) <= 3  # the bad one stays, the others are evicted as usual
    assert "bad" in m.live_ids()
    assert sorted(store.inner.list_ids()) == list("cdefg")


# ---------------------------------------------------- 6. token_counter errors
@pytest.mark.parametrize("bad", [lambda text: list(text), lambda text: "3", lambda text: -1])
def test_a_bad_token_counter_adds_nothing(bad: Callable[[str], Any]) -> None:
    m = manager_on(MemoryStore())
    state = m.get_or_create("a")
    state.policy = StatePolicy(max_recent_tokens=100, token_counter=bad)
    before = state.memory_estimate_bytes
    with pytest.raises(TypeError, match=r"len\(enc.encode\(text\)\)"):
        state.add_message(u("hello"))
    assert state.recent_messages == [] and state.memory_estimate_bytes == before
    state.policy = StatePolicy()
    state.add_message(u("fine"))
    assert books_balance(m) and estimated(m) == state.memory_estimate_bytes


def test_the_token_counter_hint_is_a_callable_that_returns_an_int() -> None:
    with pytest.raises(ValueError, match=r"len\(enc.encode\(text\)\)"):
        StatePolicy(max_recent_tokens=100)


# ------------------------------------------------- 7. non-string summaries
class OddSummarizer(Summarizer):
    is_local = True

    def __init__(self, value: Any) -> None:
        self.value = value

    def summarize(self, messages: Sequence[dict[str, Any]], previous: str, max_chars: int) -> Any:
        return self.value


@pytest.mark.parametrize("value", [["a list"], b"bytes", None, 42, "bad \udcff"])
def test_a_summarizer_returning_a_non_string_keeps_the_messages(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    m = manager_on(MemoryStore())
    state = m.get_or_create("a")
    state.policy = StatePolicy(max_recent=2, summarizer=OddSummarizer(value))
    texts = [f"m{i}" for i in range(4)]
    for text in texts:
        state.add_message(u(text))
    assert contents(state) == texts and state.summary == ""
    assert state.last_error and "summar" in state.last_error
    assert state.get_context() == [u(t) for t in texts]
    m.get_or_create("b")
    assert contents(m.get_or_create("a")) == texts  # evicted and restored intact
    assert any("summarizer" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ hostile fields
hostile_text = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(
    ["", "'", '"', "\\", "\x00", "\u2028", "🚀", "a" * 2000, "null", "NaN"]
)
hostile_number = st.integers(-(10**300), 10**300) | st.floats(allow_nan=False, allow_infinity=False)
hostile_value = st.recursive(
    hostile_text | hostile_number | st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sid=hostile_text.filter(bool),
    role=hostile_text.filter(bool),
    extra=st.dictionaries(hostile_text, hostile_value, max_size=4),
)
def test_hostile_fields_round_trip_exactly_through_sqlite(
    sid: str, role: str, extra: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        m = manager_on(SQLiteStore(Path(tmp) / "s.sqlite3"), max_sessions=1)
        message = {**extra, "role": role}
        m.get_or_create(sid).add_message(message)
        m.get_or_create(sid + "/other")  # evicts sid
        assert m.get_or_create(sid).recent_messages == [message]
        m.close()
