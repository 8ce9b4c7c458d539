"""ConversationState: exact messages, compaction triggers, bounded summary, valid context."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from jupyter_agentmem import ConversationState, ExtractiveSummarizer, StatePolicy
from jupyter_agentmem.errors import InvalidMessageError, StoreCorruptError, SummarizerError
from jupyter_agentmem.memory.summarize import SUMMARY_PREFIX, Summarizer

from .workload import turn_messages


class FailingSummarizer(Summarizer):
    def __init__(self) -> None:
        self.calls = 0

    def summarize(self, messages: Sequence[dict[str, Any]], previous: str, max_chars: int) -> str:
        self.calls += 1
        raise RuntimeError("model unavailable")


class VerboseSummarizer(Summarizer):
    """Appends forever, like the naive recipe: the state must still bound it."""

    def summarize(self, messages: Sequence[dict[str, Any]], previous: str, max_chars: int) -> str:
        return previous + "".join(f"\n{m['role']}: {m.get('content')}" for m in messages)


def test_messages_come_back_exactly_as_added() -> None:
    state = ConversationState("s")
    added = turn_messages(0)
    for message in added:
        state.add_message(message)
    assert state.recent_messages == added
    assert state.get_context() == added
    assert state.messages_total == len(added)
    assert all(set(m) == set(a) for m, a in zip(state.recent_messages, added, strict=True))


def test_invalid_messages_are_rejected_before_anything_is_stored() -> None:
    state = ConversationState("s")
    with pytest.raises(InvalidMessageError, match="role"):
        state.add_message({"content": "no role"})
    with pytest.raises(InvalidMessageError, match="tuple"):
        state.add_message({"role": "user", "content": ("a", "b")})
    with pytest.raises(InvalidMessageError, match="JSON cannot represent"):
        state.add_message({"role": "user", "content": float("nan")})
    with pytest.raises(InvalidMessageError):
        state.add_messages([{"role": "user", "content": "ok"}, {"role": "user", "x": object()}])
    assert state.recent_messages == []
    assert state.messages_total == 0


def test_byte_estimate_is_incremental_and_grows_with_content() -> None:
    state = ConversationState("s")
    empty = state.memory_estimate_bytes
    state.add_message({"role": "user", "content": "x" * 10_000})
    assert state.memory_estimate_bytes - empty >= 10_000
    small = ConversationState("t")
    small.add_message({"role": "user", "content": "hi"})
    # Object overhead is counted: far more than len(str(message)).
    assert small.memory_estimate_bytes - empty > len(str({"role": "user", "content": "hi"}))


def test_compaction_triggers_on_count() -> None:
    state = ConversationState("s", max_recent=4)
    for i in range(4):
        state.add_message({"role": "user", "content": f"m{i}"})
    assert not state.needs_compaction()
    state.add_message({"role": "user", "content": "m4"})
    assert state.needs_compaction()
    assert state.compact(ExtractiveSummarizer())
    assert len(state.recent_messages) == 2
    assert "m0" in state.summary and "m2" in state.summary
    assert state.compactions == 1


def test_compaction_triggers_on_bytes_even_with_few_messages() -> None:
    """Flaw 6: one huge message inside the recent window must trigger compaction."""
    state = ConversationState("s", max_recent=50, max_recent_bytes=64 * 1024)
    state.add_message({"role": "user", "content": "question"})
    state.add_message({"role": "assistant", "content": "x" * 1_000_000})
    state.add_message({"role": "user", "content": "next"})
    assert state.needs_compaction()
    state.compact(ExtractiveSummarizer())
    assert state.memory_estimate_bytes < 64 * 1024
    assert state.recent_messages == [{"role": "user", "content": "next"}]


def test_compaction_triggers_on_tokens() -> None:
    policy = StatePolicy(
        max_recent=100, max_recent_tokens=50, token_counter=lambda t: len(t.split())
    )
    state = ConversationState("s", policy=policy)
    state.add_message({"role": "user", "content": "word " * 30})
    assert not state.needs_compaction()
    state.add_message({"role": "user", "content": "word " * 30})
    assert state.needs_compaction()
    assert state.compact(ExtractiveSummarizer())
    assert not state.needs_compaction()


def test_auto_compaction_with_a_local_summarizer_keeps_sessions_small() -> None:
    state = ConversationState("s", summarizer=ExtractiveSummarizer())
    for turn in range(50):
        for message in turn_messages(turn, tool_output="r" * 2000):
            state.add_message(message)
    assert state.messages_total == 350
    assert len(state.recent_messages) <= 10
    assert state.compactions > 10
    assert state.memory_estimate_bytes < 48 * 1024


def test_summary_stays_bounded_even_with_an_appending_summarizer() -> None:
    """Flaw 1: the naive running summary grows forever."""
    state = ConversationState("s", max_recent=2, max_summary_chars=500)
    for i in range(200):
        state.add_message({"role": "user", "content": f"message number {i} " + "z" * 50})
        if state.needs_compaction():
            state.compact(VerboseSummarizer())
        assert len(state.summary) <= 500
    assert state.compactions > 50


def test_tool_calls_never_separated_from_results() -> None:
    state = ConversationState("s", max_recent=3)
    for turn in range(20):
        for message in turn_messages(turn, tool_output="ok"):
            state.add_message(message)
            if state.needs_compaction():
                state.compact(ExtractiveSummarizer())
            window = state.recent_messages
            assert not window or window[0]["role"] != "tool"
            answered = set()
            for m in window:
                if m["role"] == "assistant":
                    answered |= {c["id"] for c in m.get("tool_calls") or []}
                if m["role"] == "tool":
                    assert m["tool_call_id"] in answered, "orphan tool result in the window"


def test_pending_tool_call_is_kept_when_everything_else_is_folded() -> None:
    state = ConversationState("s", max_recent=1, max_recent_bytes=1024)
    state.add_message({"role": "user", "content": "x" * 2000})
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    state.add_message(call)
    state.compact(ExtractiveSummarizer())
    assert state.recent_messages == [call]


def test_failing_summarizer_loses_nothing() -> None:
    """Flaw 9: the naive design drops the turns it failed to summarise."""
    state = ConversationState("s", max_recent=2)
    messages = [{"role": "user", "content": f"m{i}"} for i in range(6)]
    state.add_messages(messages)
    failing = FailingSummarizer()
    with pytest.raises(SummarizerError, match="model unavailable"):
        state.compact(failing)
    assert state.recent_messages == messages
    assert state.summary == ""
    assert state.last_error and "model unavailable" in state.last_error
    assert state.compact(ExtractiveSummarizer())
    assert state.last_error is None


def test_failing_inline_summarizer_does_not_break_add_message() -> None:
    failing = FailingSummarizer()
    failing.is_local = True
    state = ConversationState("s", max_recent=2, summarizer=failing)
    for i in range(5):
        state.add_message({"role": "user", "content": f"m{i}"})
    assert len(state.recent_messages) == 5
    assert failing.calls >= 1


def test_context_starts_with_the_summary_as_system_message() -> None:
    state = ConversationState("s", max_recent=2)
    state.add_messages([{"role": "user", "content": f"m{i}"} for i in range(5)])
    state.compact(ExtractiveSummarizer())
    context = state.get_context()
    assert context[0]["role"] == "system"
    assert context[0]["content"].startswith(SUMMARY_PREFIX)
    assert context[1:] == state.recent_messages


def test_acompact_is_the_async_twin() -> None:
    a = ConversationState("s", max_recent=2)
    b = ConversationState("s", max_recent=2)
    messages = [{"role": "user", "content": f"m{i}"} for i in range(7)]
    a.add_messages(messages)
    b.add_messages(messages)
    assert a.compact(ExtractiveSummarizer())
    assert asyncio.run(b.acompact(ExtractiveSummarizer()))
    assert a.summary == b.summary
    assert a.recent_messages == b.recent_messages


def test_round_trip_through_json_is_exact() -> None:
    state = ConversationState("ümlaut/'quote\"", max_recent=3)
    for message in turn_messages(1):
        state.add_message(message)
    state.compact(ExtractiveSummarizer())
    doc = json.loads(json.dumps(state.to_dict()))
    again = ConversationState.from_dict(doc)
    assert again.to_dict() == state.to_dict()
    assert again.memory_estimate_bytes == pytest.approx(state.memory_estimate_bytes, rel=0.05)


def test_from_dict_rejects_damaged_documents() -> None:
    with pytest.raises(StoreCorruptError, match="session_id"):
        ConversationState.from_dict({"messages": []})
    with pytest.raises(StoreCorruptError, match="format"):
        ConversationState.from_dict({"session_id": "a", "format": 99, "messages": []})
    with pytest.raises(StoreCorruptError, match="damaged"):
        ConversationState.from_dict({"session_id": "a", "format": 1, "messages": "nope"})


def test_policy_validation_messages_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="token_counter"):
        StatePolicy(max_recent_tokens=100)
    with pytest.raises(ValueError, match="max_recent"):
        ConversationState("s", max_recent=0)
