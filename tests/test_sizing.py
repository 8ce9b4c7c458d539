"""The byte estimate is calibrated against real heap use (tracemalloc)."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from benchmarks.bench_engine import heap_per_session
from jupyter_agentmem import ConversationState, ExtractiveSummarizer
from jupyter_agentmem.errors import InvalidMessageError
from jupyter_agentmem.memory.sizing import json_size, message_size

from .workload import turn_messages


def _fresh(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    """Messages as they arrive from an API: decoded JSON, nothing shared with literals."""
    return json.loads(json.dumps(messages))  # type: ignore[no-any-return]


@pytest.mark.parametrize("turns", [1, 10])
def test_estimate_is_within_5_percent_of_tracemalloc_on_the_benchmark_workload(
    turns: int,
) -> None:
    """The README's figure, on the README's workload.

    Same code as ``python -m benchmarks.bench_engine``: sessions of the benchmark turn
    (4 tool calls, ~11 KB JSON results truncated on the way in) in a SessionManager
    with its defaults. Measured here: +3.3 % to +3.8 % with 20 sessions of 1 to 100
    turns, -1.3 % to +0.1 % with 5 (the manager's own overhead weighs more); 5
    sessions keep this test at seconds (20 x 50 turns take minutes under
    tracemalloc). 10 turns are past the first compaction: the steady state.
    """
    real, estimate = heap_per_session("engine", 5, turns)
    assert abs(estimate - real) / real < 0.05, (estimate, real)


@pytest.mark.parametrize("turns", [1, 50])
def test_estimate_of_small_sessions_is_within_20_percent(turns: int) -> None:
    """Bare states of a few KiB: per-object overhead the estimate leaves out weighs more.

    Measured here: -5 % to -16 % (the estimate is low). Documented in benchmarks/README.md.
    """
    batches = [_fresh(turn_messages(t, tool_output="x" * 2000)) for t in range(turns)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        states = []
        for s in range(20):
            state = ConversationState(f"s{s}", summarizer=ExtractiveSummarizer())
            for batch in batches:
                state.add_messages(_fresh(batch))
            states.append(state)
        gc.collect()
        real = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = sum(s.memory_estimate_bytes for s in states)
    assert abs(estimate - real) / real < 0.20, (estimate, real)


def test_json_size_counts_nested_structures() -> None:
    flat = json_size({"a": "x"})
    nested = json_size({"a": {"b": ["x" * 1000, 12345678]}})
    assert nested > flat + 1000


def test_message_size_names_the_problem() -> None:
    with pytest.raises(InvalidMessageError, match="not list"):
        message_size([])  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match="int key"):
        message_size({"role": "user", "meta": {1: "x"}})
    deep: dict[str, object] = {"role": "user"}
    cursor = deep
    for _ in range(100):
        cursor["next"] = {}
        cursor = cursor["next"]  # type: ignore[assignment]
    with pytest.raises(InvalidMessageError, match="deeper"):
        message_size(deep)
