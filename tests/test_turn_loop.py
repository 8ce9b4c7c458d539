"""The turn's logic without sockets: TurnLoop takes events and outcomes, says what to do next."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_agentmem.agent.turn import INTERRUPTED, CallModel, Done, RunTools, TurnEvent, TurnLoop
from jupyter_agentmem.memory.truncate import ToolOutputTruncator
from jupyter_agentmem.model.adapter import Finish, TextDelta, ToolCall
from jupyter_agentmem.model.tools import Tool, ToolOutcome


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def make_loop(max_rounds: int = 2) -> tuple[TurnLoop, list[TurnEvent]]:
    seen: list[TurnEvent] = []
    loop = TurnLoop(
        prompt="q",
        context=lambda: [{"role": "system", "content": "s"}],
        request={"model": "m"},
        tools=[Tool.from_function(add)],
        max_rounds=max_rounds,
        truncate=ToolOutputTruncator(max_chars=500).truncate_ex,
        record=seen.append,
    )
    return loop, seen


def stream(loop: TurnLoop, *events: Any) -> list[TurnEvent]:
    return [out for e in events if (out := loop.on_event(e)) is not None]


def test_tool_rounds_then_done() -> None:
    loop, seen = make_loop()
    first = loop.next_step()
    assert isinstance(first, CallModel) and first.request["tools"]
    assert first.request["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
    ]
    call = ToolCall("c1", "add", '{"a": 1, "b": 2}')
    assert stream(loop, TextDelta("hm"), call, Finish("tool_calls")) == [
        TextDelta("hm"),
        Finish("tool_calls"),
    ]
    tools = loop.next_step()
    assert isinstance(tools, RunTools) and tools.jobs[0].tool is not None
    with pytest.raises(RuntimeError):
        loop.next_step()  # the outcome has not been fed back
    result = loop.on_tool_outcome(call, ToolOutcome(3), 0.1)
    assert result.content == "3" and seen[-1] == result
    again = loop.next_step()
    assert isinstance(again, CallModel)
    assert again.request["messages"][-1] == {"role": "tool", "tool_call_id": "c1", "content": "3"}
    stream(loop, TextDelta("three"), Finish("stop"))
    done = loop.next_step()
    assert isinstance(done, Done)
    assert [m["role"] for m in done.messages] == ["user", "assistant", "tool", "assistant"]
    assert done.messages[-1]["content"] == "three"


def test_last_round_offers_no_tools_and_ends_after_its_tools() -> None:
    loop, _ = make_loop(max_rounds=1)
    for round_number in range(2):
        step = loop.next_step()
        assert isinstance(step, CallModel)
        assert bool(step.request["tools"]) == (round_number == 0)
        call = ToolCall(f"c{round_number}", "nope", "{}")
        stream(loop, call, Finish("tool_calls"))
        tools = loop.next_step()
        assert isinstance(tools, RunTools)
        (job,) = tools.jobs
        assert job.tool is None and "no tool named 'nope'" in (job.refusal().error or "")
        loop.on_tool_outcome(call, job.refusal(), 0.0)
    assert isinstance(loop.next_step(), Done)


def test_errors_are_truncated_like_results() -> None:
    loop, _ = make_loop()
    loop.next_step()
    call = ToolCall("c1", "add", "{}")
    stream(loop, call)
    loop.next_step()
    result = loop.on_tool_outcome(call, ToolOutcome(None, "RuntimeError: " + "E" * 100_000), 0.0)
    assert len(result.content) <= 500 and result.content.startswith("Error: RuntimeError: E")
    assert result.error is not None and len(result.error) <= 500
    assert result.saved_chars > 99_000 and loop.saved_chars == result.saved_chars


def test_interrupted_turn_answers_pending_calls_and_is_marked() -> None:
    loop, _ = make_loop()
    loop.next_step()
    calls = [ToolCall("c1", "add", "{}"), ToolCall("c2", "add", "{}")]
    stream(loop, TextDelta("partial"), *calls)
    loop.next_step()
    loop.on_tool_outcome(calls[0], ToolOutcome(1), 0.0)
    messages = loop.messages(interrupted=True)
    assert [m.get("tool_call_id") for m in messages if m["role"] == "tool"] == ["c1", "c2"]
    assert "interrupted" in messages[-2]["content"]
    assert messages[-1] == {"role": "assistant", "content": INTERRUPTED}
