"""The compressed idle tier: exact round trips, its byte budget, LRU spill order."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem.errors import StoreCorruptError
from jupyter_agentmem.memory.state import ConversationState
from jupyter_agentmem.memory.summarize import ExtractiveSummarizer
from jupyter_agentmem.memory.tier import CompressedTier, decode, encode
from tests.strategies import json_values, messages
from tests.workload import turn_messages


def session_doc(turns: int = 20, session_id: str = "s") -> dict:
    state = ConversationState(session_id, summarizer=ExtractiveSummarizer())
    for turn in range(turns):
        for message in turn_messages(turn, "x" * 2000):
            state.add_message(message)
    return state.to_dict()


long_text = st.text(min_size=64, max_size=300)  # lifted out of the JSON skeleton


@settings(max_examples=200, deadline=None)
@given(
    msgs=messages,
    contents=st.lists(long_text | st.none(), max_size=6),
    summary=st.text(max_size=300) | json_values,
    extra=json_values,
)
def test_round_trip_is_exact(msgs, contents, summary, extra):
    for message, content in zip(msgs, contents, strict=False):
        if content is not None:
            message["content"] = content  # any unicode, lone surrogates included
    doc = {"session_id": "s", "summary": summary, "messages": msgs, "extra": extra}
    before = json.dumps(doc, sort_keys=True)
    assert decode(encode(doc)) == doc
    assert json.dumps(doc, sort_keys=True) == before  # encode did not mutate its input


def test_real_session_round_trips_and_compresses():
    doc = session_doc()
    blob = encode(doc)
    assert decode(blob) == doc
    assert len(blob) * 4 < len(json.dumps(doc))


def test_damaged_entry_raises_a_named_error():
    with pytest.raises(StoreCorruptError, match="damaged"):
        decode(b"not zlib")


def test_take_restores_and_removes():
    tier = CompressedTier(max_bytes=1 << 20)
    doc = session_doc(session_id="a")
    assert tier.put("a", doc, meta=7) == []
    assert "a" in tier and len(tier) == 1 and tier.nbytes > 0
    assert tier.get("a") == doc and "a" in tier
    assert tier.take("a") == (doc, 7)
    assert "a" not in tier and tier.nbytes == 0
    assert tier.take("a") is None


def test_budget_spills_least_recently_used_first():
    doc = session_doc()
    one = CompressedTier(max_bytes=1 << 20)
    one.put("probe", doc)
    cost = one.nbytes
    tier = CompressedTier(max_bytes=cost * 3 + cost // 2)  # room for three entries
    for sid in ("a", "b", "c"):
        assert tier.put(sid, dict(doc, session_id=sid)) == []
    tier.take("a")
    tier.put("a", dict(doc, session_id="a"), meta=3)  # "a" is now the newest
    spilled = tier.put("d", dict(doc, session_id="d"))
    assert [s.session_id for s in spilled] == ["b"]
    assert spilled[0].doc == dict(doc, session_id="b")
    assert tier.ids() == ["c", "a", "d"]
    assert tier.nbytes <= tier.max_bytes
    assert [s.session_id for s in tier.resize(cost + cost // 2)] == ["c", "a"]
    assert tier.ids() == ["d"]


def test_entry_larger_than_the_budget_goes_straight_to_the_store():
    doc = session_doc()
    tier = CompressedTier(max_bytes=100)
    spilled = tier.put("big", doc, meta=2)
    assert [(s.session_id, s.meta) for s in spilled] == [("big", 2)]
    assert spilled[0].doc == doc and len(tier) == 0 and tier.nbytes == 0


def test_put_replaces_an_entry_of_the_same_id():
    tier = CompressedTier()
    tier.put("a", {"session_id": "a", "messages": [], "summary": "old"})
    size = tier.nbytes
    tier.put("a", {"session_id": "a", "messages": [], "summary": "new"})
    assert len(tier) == 1 and tier.nbytes == size
    assert tier.take("a") == ({"session_id": "a", "messages": [], "summary": "new"}, None)


def test_drain_empties_in_lru_order():
    tier = CompressedTier()
    for sid in ("x", "y"):
        tier.put(sid, {"session_id": sid, "messages": [], "summary": ""}, meta=1)
    assert [s.session_id for s in tier.drain()] == ["x", "y"]
    assert len(tier) == 0 and tier.nbytes == 0
    assert tier.stats() == {"sessions": 0, "bytes": 0, "max_bytes": tier.max_bytes}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        CompressedTier(max_bytes=-1)
    with pytest.raises(ValueError, match="level"):
        CompressedTier(level=10)


def test_concurrent_puts_and_takes_keep_the_accounting():
    doc = session_doc(turns=3)
    tier = CompressedTier(max_bytes=1 << 22)

    def worker(n: int) -> None:
        for i in range(200):
            sid = f"{n}-{i % 10}"
            tier.put(sid, dict(doc, session_id=sid))
            if i % 3 == 0:
                tier.take(sid)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tier.nbytes == sum(tier._cost(sid, tier._entries[sid][0]) for sid in tier.ids())


def test_lone_surrogates_at_string_boundaries_stay_apart():
    doc = {
        "session_id": "s",
        "summary": "\ude00" + "s" * 70,
        "messages": [{"role": "user", "content": "u" * 70 + "\ud83d"}],
    }
    assert decode(encode(doc)) == doc
