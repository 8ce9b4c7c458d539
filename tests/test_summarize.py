"""Summarizers: extractive stays bounded; the LLM one talks to a real HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from jupyter_agentmem import ConversationState
from jupyter_agentmem.errors import SummarizerError
from jupyter_agentmem.memory.summarize import ExtractiveSummarizer, LLMSummarizer
from jupyter_agentmem.testing import FakeModelServer

from .workload import turn_messages


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    srv = FakeModelServer(default=None).start()
    yield srv
    srv.stop()


def test_extractive_summary_is_bounded_and_deterministic() -> None:
    summarizer = ExtractiveSummarizer()
    summary = ""
    for turn in range(40):
        summary = summarizer.summarize(turn_messages(turn, tool_output="{}"), summary, 600)
        assert len(summary) <= 600
    again = ""
    for turn in range(40):
        again = summarizer.summarize(turn_messages(turn, tool_output="{}"), again, 600)
    assert again == summary
    assert summary.startswith("[... ") and "earlier points condensed" in summary
    assert "answer 39" in summary  # the newest turn is always there


def test_llm_summarizer_sends_a_bounded_request(server: FakeModelServer) -> None:
    server.enqueue_text("The user asked about turn 0 and turn 1.")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    summarizer = LLMSummarizer(client, "sum-model", request_chars=5_000)
    messages = turn_messages(0) + turn_messages(1)  # ~90 KB of tool output
    summary = summarizer.summarize(messages, "earlier: hello", 300)
    assert summary == "The user asked about turn 0 and turn 1."
    request = server.requests[-1]
    assert request["model"] == "sum-model"
    assert "at most 300 characters" in request["messages"][0]["content"]
    assert "earlier: hello" in request["messages"][1]["content"]
    assert len(request["messages"][1]["content"]) < 6_000


def test_llm_summarizer_failure_keeps_the_messages(server: FakeModelServer) -> None:
    server.enqueue_error(503, "overloaded")
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    state = ConversationState("s", max_recent=2)
    state.add_messages([{"role": "user", "content": f"m{i}"} for i in range(6)])
    with pytest.raises(SummarizerError, match="summary request failed"):
        state.compact(LLMSummarizer(client, "m"))
    assert len(state.recent_messages) == 6 and state.summary == ""


def test_llm_summary_longer_than_the_budget_is_bounded(server: FakeModelServer) -> None:
    server.enqueue_text("word " * 400)  # 2,000 chars, budget 500
    server.enqueue_text("still " * 200)  # the re-summarising request ignores the budget too
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    state = ConversationState("s", max_recent=2, max_summary_chars=500)
    state.add_messages([{"role": "user", "content": f"m{i}"} for i in range(6)])
    assert state.compact(LLMSummarizer(client, "m"))
    assert len(state.summary) <= 500


def test_async_twin_uses_the_async_client(server: FakeModelServer) -> None:
    server.enqueue_text("async summary")
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    state = ConversationState("s", max_recent=2)
    state.add_messages([{"role": "user", "content": f"m{i}"} for i in range(6)])
    assert asyncio.run(state.acompact(LLMSummarizer(async_client=client, model="m")))
    assert state.summary == "async summary"
