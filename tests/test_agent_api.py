"""The Python API under %%agent: lazy responses, atomic turns, tools, sync/async parity."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_agentmem import Agent, ModelError, SessionManager
from jupyter_agentmem.agent.chat import INTERRUPTED, ToolResult
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.errors import AgentMemError
from jupyter_agentmem.model.adapter import TextDelta
from jupyter_agentmem.model.tools import ToolRegistry
from jupyter_agentmem.stores import MemoryStore
from jupyter_agentmem.testing import FakeModelServer


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelServer]:
    srv = FakeModelServer(default=None).start()
    yield srv
    srv.stop()


@pytest.fixture
def agent(server: FakeModelServer) -> Iterator[Agent]:
    config = AgentMem(
        base_url=server.base_url,
        model="test-model",
        max_retries=0,
        timeout=5.0,
        summarizer="extractive",
    )
    registry = ToolRegistry()

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    def rows(n: int) -> list[dict[str, Any]]:
        """Many rows."""
        return [{"id": i, "text": "row text " * 4} for i in range(n)]

    registry.register(add)
    registry.register(rows)
    a = Agent(SessionManager(store=MemoryStore()), config, registry)
    yield a
    a.close()
    assert server.pending == 0


def test_response_streams_then_replays(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_text("one two three", chunk_size=3)
    response = agent.chat("count", session="s")
    chunks = list(response)
    assert "".join(chunks) == "one two three" and len(chunks) > 2
    assert list(response) == chunks  # iterating again replays, no second request
    assert response.text == "one two three"
    assert response.usage is not None and response.usage.completion_tokens > 0
    state = agent.manager.get_or_create("s")
    assert state.recent_messages == [
        {"role": "user", "content": "count"},
        {"role": "assistant", "content": "one two three"},
    ]


def test_parallel_tool_calls_are_all_answered(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_tool_calls(
        [
            {"name": "add", "arguments": {"a": 2, "b": 40}},
            {"name": "rows", "arguments": {"n": 500}},
            {"name": "nope", "arguments": {}},
            {"name": "add", "arguments": "{not json"},
        ]
    )
    server.enqueue_text("done")
    response = agent.chat("use tools", session="t")
    events = list(response.events())
    results = [e for e in events if isinstance(e, ToolResult)]
    assert [r.call.name for r in results] == ["add", "rows", "nope", "add"]
    assert results[0].content == "42"
    assert len(results[1].content) <= agent.config.tool_max_chars
    json.loads(results[1].content)
    assert results[1].saved_chars > 0
    assert "no tool named 'nope'" in (results[2].error or "")
    assert "not valid JSON" in (results[3].error or "")
    roles = [m["role"] for m in agent.manager.get_or_create("t").recent_messages]
    assert roles == ["user", "assistant", "tool", "tool", "tool", "tool", "assistant"]
    assert agent.manager.stats().truncated_chars_saved >= results[1].saved_chars


def test_tool_rounds_are_bounded(agent: Agent, server: FakeModelServer) -> None:
    agent.config.max_tool_rounds = 2
    try:
        for _ in range(2):
            server.enqueue_tool_calls([{"name": "add", "arguments": {"a": 1, "b": 1}}])
        server.enqueue_text("gave up on tools")
        response = agent.chat("loop forever", session="rounds")
        assert response.text == "gave up on tools"
        assert "tools" not in server.requests[-1]  # the last round offers no tools
    finally:
        agent.config.max_tool_rounds = 8


def test_a_failed_turn_stores_nothing(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_error(500, "boom")
    with pytest.raises(ModelError, match="500"):
        agent.chat("hello", session="f").text  # noqa: B018
    assert agent.manager.get_or_create("f").messages_total == 0
    server.enqueue_tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}])
    server.enqueue_drop(after_chunks=1)
    with pytest.raises(ModelError):
        agent.chat("hello", session="f").text  # noqa: B018
    assert agent.manager.get_or_create("f").messages_total == 0


def test_stopping_early_stores_the_partial_answer(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_text("abcdefghij" * 50, chunk_size=5)
    events = agent.chat("long", session="p").events()
    seen = [next(events).text for _ in range(3)]  # type: ignore[union-attr]
    events.close()
    stored = agent.manager.get_or_create("p").recent_messages
    assert stored[-1]["content"].startswith("".join(seen))
    assert stored[-1]["content"].endswith(INTERRUPTED)


def test_context_is_summary_plus_recent(agent: Agent, server: FakeModelServer) -> None:
    for i in range(12):
        server.enqueue_text(f"answer {i}")
        agent.chat(f"question {i}", session="ctx").text  # noqa: B018
    sent = server.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[1]["content"].startswith("Summary of earlier conversation")
    assert sent[-1] == {"role": "user", "content": "question 11"}
    assert len(sent) <= 12


def test_sync_and_async_produce_the_same_events(agent: Agent, server: FakeModelServer) -> None:
    def script() -> None:
        server.enqueue_tool_calls([{"name": "add", "arguments": {"a": 3, "b": 4}}], text="let me")
        server.enqueue_text("seven", chunk_size=2)

    def shape(events: list[Any]) -> list[Any]:
        return [
            (type(e).__name__, e.call.name, e.content) if isinstance(e, ToolResult) else e
            for e in events
        ]

    script()
    sync_events = list(agent.chat("add", session="sync").events())

    async def collect() -> list[Any]:
        return [e async for e in agent.achat("add", session="async").events()]

    script()
    async_events = asyncio.run(collect())
    assert shape(sync_events) == shape(async_events)

    def stored(session: str) -> str:
        text = json.dumps(agent.manager.get_or_create(session).recent_messages)
        return re.sub(r"call_\d+", "call_N", text)  # the server numbers calls globally

    assert stored("sync") == stored("async")


def test_events_twice_is_refused_on_both_sides(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_text("once")
    response = agent.chat("hello", session="twice-sync")
    assert [e.text for e in response.events() if isinstance(e, TextDelta)] == ["once"]
    with pytest.raises(AgentMemError, match="already consumed"):
        response.events()

    async def twice() -> int:
        aresponse = agent.achat("hello", session="twice-async")
        first = [e async for e in aresponse.events()]
        with pytest.raises(AgentMemError, match="already consumed"):
            aresponse.events()
        fresh = agent.achat("never sent", session="twice-async")
        unstarted = fresh.events()  # claimed at the call, before any iteration
        with pytest.raises(AgentMemError, match="already consumed"):
            fresh.events()
        await unstarted.aclose()
        assert [c async for c in aresponse] == ["once"]  # replay, no request
        return len(first)

    requests = len(server.requests)
    server.enqueue_text("once")
    assert asyncio.run(twice()) > 0
    assert len(server.requests) == requests + 1
    for session in ("twice-sync", "twice-async"):
        stored = agent.manager.get_or_create(session).recent_messages
        assert [m["role"] for m in stored] == ["user", "assistant"]


def test_many_concurrent_async_sessions(agent: Agent, server: FakeModelServer) -> None:
    for _ in range(50):
        server.enqueue_text("hi", chunk_size=1, delay=0.002)

    async def one(i: int) -> str:
        return await agent.achat(f"hello {i}", session=f"c{i}").atext()

    async def many() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(50)))

    assert asyncio.run(many()) == ["hi"] * 50
    assert sum(agent.manager.get_or_create(f"c{i}").messages_total for i in range(50)) == 100


def test_text_events_reach_the_consumer_in_order(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_text("0123456789", chunk_size=1)
    texts = [e.text for e in agent.chat("digits", session="o").events() if isinstance(e, TextDelta)]
    assert texts == list("0123456789")


def test_a_tool_error_goes_through_the_truncator(agent: Agent, server: FakeModelServer) -> None:
    def explode() -> None:
        """Fails with a huge message."""
        raise RuntimeError("E" * 5_000_000)

    agent.registry.register(explode)
    server.enqueue_tool_calls([{"name": "explode", "arguments": {}}])
    server.enqueue_text("it failed")
    response = agent.chat("explode", session="boom")
    assert response.text == "it failed"
    limit = agent.config.tool_max_chars
    (result,) = response.tool_results
    assert result.error is not None and result.error.startswith("RuntimeError: EEE")
    assert len(result.content) <= limit and len(result.error) <= limit
    assert result.saved_chars > 4_000_000
    sent = server.requests[-1]["messages"]
    assert len(json.dumps(sent)) < 4 * limit
    stored = agent.manager.get_or_create("boom").recent_messages
    assert stored[2]["role"] == "tool" and len(stored[2]["content"]) <= limit


def test_invalid_arguments_go_back_to_the_model(agent: Agent, server: FakeModelServer) -> None:
    server.enqueue_tool_calls([{"name": "add", "arguments": {"a": "two", "b": 1}}])
    server.enqueue_text("sorry")
    response = agent.chat("add badly", session="invalid")
    assert response.text == "sorry"
    (result,) = response.tool_results
    assert result.error is not None and "a: Input should be a valid integer" in result.error
    tool_message = server.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert tool_message["content"].startswith("Error: invalid arguments for add")


def test_stopping_an_async_turn_early_stores_the_partial_answer(
    agent: Agent, server: FakeModelServer
) -> None:
    server.enqueue_text("abcdefghij" * 50, chunk_size=5)

    async def stop_after_three() -> list[str]:
        events = agent.achat("long", session="ap").events()
        seen = [(await events.__anext__()).text for _ in range(3)]  # type: ignore[union-attr]
        await events.aclose()
        return seen

    seen = asyncio.run(stop_after_three())
    stored = agent.manager.get_or_create("ap").recent_messages
    assert stored[-1]["content"].startswith("".join(seen))
    assert stored[-1]["content"].endswith(INTERRUPTED)
