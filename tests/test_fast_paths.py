"""The add path's fast paths give exactly what the general code gives.

``message_size`` walks common message shapes with a specialised walk and falls
back to ``json_size`` for anything else; the extractive summarizer builds its
lines and merges the summary without re-walking it; the state's byte estimate
reads ``__sizeof__`` directly. Each is checked here against the general code (or,
for the summarizer, the previous implementation kept below as the reference).
"""

from __future__ import annotations

import math
import re
import sys
from array import array
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_agentmem import ConversationState, SessionManager
from jupyter_agentmem.errors import InvalidMessageError
from jupyter_agentmem.memory.compaction import Window, open_tool_group, split_point
from jupyter_agentmem.memory.policy import StatePolicy
from jupyter_agentmem.memory.sizing import _dict_size, json_size, message_size
from jupyter_agentmem.memory.summarize import ExtractiveSummarizer, message_text
from jupyter_agentmem.stores import MemoryStore

from .strategies import json_values

# --------------------------------------------------------------- sizing
# Odd but JSON-shaped values and the unencodable ones message_size must refuse.
_ODD: dict[str, object] = {
    "surrogate": "\ud800",
    "accented": "caf\u00e9",
    "long": "x" * 40,
    "giant int": 10**5000,
    "big int": -(10**30),
    "257": 257,
    "-6": -6,
    "nan": math.nan,
    "inf": math.inf,
    "float": 1.5,
    "tuple": (1, 2),
    "set": {1, 2},
    "bytes": b"bytes",
    "true": True,
    "none": None,
}


def _odd(name: str) -> object:
    return _ODD[name]


odd_scalars = st.sampled_from(sorted(_ODD)).map(_odd)
odd_keys = st.text(max_size=20) | st.sampled_from(["k\udc80", "é", "k" * 17]) | st.integers()
hostile_values = st.recursive(
    json_values | odd_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_keys, inner, max_size=4),
    max_leaves=12,
)


def _outcome(fn: Any, message: dict[str, Any]) -> tuple[str, object]:
    try:
        return "ok", fn(message)
    except InvalidMessageError as exc:
        return "error", str(exc)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(odd_keys, hostile_values, max_size=5), st.sampled_from(["user", "tool"]))
def test_message_size_equals_the_general_walk(extra: dict[Any, Any], role: str) -> None:
    message = {"role": role, **extra}
    if type(message.get("role")) is not str or not message["role"]:
        message["role"] = role
    assert _outcome(message_size, message) == _outcome(json_size, message)


def test_message_size_of_the_common_shapes_takes_the_fast_walk() -> None:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for i in range(3)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls, "n": 10**6, "f": 0.5}
    assert _dict_size(message, 0) == json_size(message) > 0  # no fallback needed


def test_deep_nesting_is_refused_by_the_fast_walk_too() -> None:
    value: Any = "leaf"
    for _ in range(70):
        value = {"k": value}
    with pytest.raises(InvalidMessageError, match="nested deeper"):
        message_size({"role": "user", "content": value})


# --------------------------------------------------------- summarizer
_CONDENSED = re.compile(r"^\[\.\.\. (\d+) earlier points condensed\]$")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text[: limit * 2].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reference_line(message: dict[str, Any], line_chars: int) -> str:
    """ExtractiveSummarizer._line before the fast path (the reference)."""
    role = str(message.get("role", "?"))
    text = message_text(message)
    if role == "tool":
        raw = message.get("content")
        size = len(raw) if isinstance(raw, str) else len(text)
        label = message.get("name") or message.get("tool_call_id") or "tool"
        return _clip(f"- tool {label} -> {size:,} chars: {text}", line_chars)
    return _clip(f"- {role}: {text}", line_chars)


def reference_summarize(
    messages: Sequence[dict[str, Any]], previous: str, max_chars: int, line_chars: int
) -> str:
    """ExtractiveSummarizer.summarize before the fast path (the reference)."""
    lines = [ln for ln in previous.splitlines() if ln.strip()]
    condensed = 0
    if lines and (match := _CONDENSED.match(lines[0])):
        condensed = int(match.group(1))
        lines = lines[1:]
    lines.extend(reference_line(m, line_chars) for m in messages)
    total = sum(len(ln) + 1 for ln in lines)
    start = 0
    while start < len(lines):
        header = f"[... {condensed} earlier points condensed]\n" if condensed else ""
        if total + len(header) <= max_chars:
            break
        total -= len(lines[start]) + 1
        start += 1
        condensed += 1
    header = f"[... {condensed} earlier points condensed]\n" if condensed else ""
    return (header + "\n".join(lines[start:]))[:max_chars]


# Every str.splitlines boundary (\n \r \x0b \x0c \x1c-\x1e \x85 \u2028 \u2029), other
# whitespace (\t \x1f \xa0), unicode, and texts long enough to be clipped.
_CHARS = "ab \n\r\t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029é€😀-:[.]"
texts = (
    st.text(st.sampled_from(_CHARS))
    | st.text(max_size=400)
    | st.builds(
        lambda word, n, sep: sep.join([word] * n),
        st.text(_CHARS, max_size=12),
        st.integers(0, 300),
        st.sampled_from(["", " ", "  ", "\n", " \t "]),
    )
)
summary_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "tool", "system"]) | st.integers()},
        optional={
            "content": st.none() | texts | st.lists(st.fixed_dictionaries({"text": texts})),
            "tool_calls": st.none()
            | st.just([])
            | st.just({"odd": 1})
            | st.lists(
                st.fixed_dictionaries(
                    {"id": st.text(max_size=5)},
                    optional={"function": st.fixed_dictionaries({"name": texts})},
                ),
                max_size=3,
            ),
            "name": texts,
            "tool_call_id": st.text(max_size=8),
        },
    ),
    max_size=8,
)
previous_summaries = (
    texts
    | st.builds(
        lambda n, rest: f"[... {n} earlier points condensed]\n{rest}", st.integers(0, 10**4), texts
    )
    | st.builds(
        lambda n, rest: f"\n  \n[... {n:03d} earlier points condensed]\n\n{rest}",
        st.integers(0, 99),
        texts,
    )
    | st.builds(  # counters about to gain a digit, over summaries written here
        lambda n, rest: f"[... {n} earlier points condensed]\n{rest}",
        st.sampled_from([1, 8, 9, 98, 99, 999, 9999]),
        st.lists(st.text(st.sampled_from("ab -:é"), min_size=1, max_size=60), max_size=30).map(
            lambda lines: "\n".join(f"- {line}" for line in lines)
        ),
    )
)


@settings(max_examples=400, deadline=None)
@given(summary_messages, previous_summaries, st.integers(1, 3000), st.integers(20, 200))
def test_extractive_summary_equals_the_reference(
    messages: list[dict[str, Any]], previous: str, max_chars: int, line_chars: int
) -> None:
    summarizer = ExtractiveSummarizer(line_chars)
    expected = reference_summarize(messages, previous, max_chars, line_chars)
    assert summarizer.summarize(messages, previous, max_chars) == expected


@settings(max_examples=300, deadline=None)
@given(summary_messages, st.integers(20, 200))
def test_extractive_lines_equal_the_reference(
    messages: list[dict[str, Any]], line_chars: int
) -> None:
    expected = [reference_line(m, line_chars) for m in messages]
    assert ExtractiveSummarizer(line_chars).lines(messages) == expected


@pytest.mark.parametrize("line_chars", [20, 160])
def test_extractive_lines_at_the_clip_edges_equal_the_reference(line_chars: int) -> None:
    """Lines whose collapsed text is just under, at or just over ``line_chars``, or whose
    whitespace runs straddle the ``2 * line_chars`` chars that are read."""
    messages: list[dict[str, Any]] = []
    for n in range(line_chars - 12, 2 * line_chars + 4):
        for filler in ("x", " x", "x  ", "\n\t"):
            messages.append({"role": "user", "content": (filler * n)[:n]})
            messages.append({"role": "tool", "tool_call_id": "c", "content": "é" * n + "  y"})
    expected = [reference_line(m, line_chars) for m in messages]
    assert ExtractiveSummarizer(line_chars).lines(messages) == expected


conversation_messages = st.lists(
    st.one_of(
        st.builds(lambda t: {"role": "user", "content": t}, texts),
        st.builds(lambda t: {"role": "assistant", "content": t}, st.none() | texts),
        st.builds(
            lambda parts: {"role": "user", "content": [{"type": "text", "text": p} for p in parts]},
            st.lists(texts, max_size=3),
        ),
        st.builds(lambda n: {"role": "tool_round", "n": n}, st.integers(1, 3)),
    ),
    max_size=40,
)


def _conversation(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Valid messages from the drawn steps: a ``tool_round`` becomes an assistant message
    with ``n`` calls and their results (long, unicode, JSON-looking)."""
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        if step["role"] != "tool_round":
            out.append(step)
            continue
        ids = [f"call_{i}_{j}" for j in range(step["n"])]
        calls = [
            {"id": c, "type": "function", "function": {"name": "f", "arguments": '{"q": "é"}'}}
            for c in ids
        ]
        out.append({"role": "assistant", "content": None, "tool_calls": calls})
        for j, c in enumerate(ids):
            result = (
                '{"rows": ['
                + ", ".join(f'{{"id": {k}, "v": "é {k}"}}' for k in range(j * 97))
                + "]}"
            )
            out.append({"role": "tool", "tool_call_id": c, "content": result})
    return out


class _ReferenceSummarizer(ExtractiveSummarizer):
    """The extractive summarizer as it was (the reference functions above)."""

    def summarize(
        self, messages: Sequence[dict[str, Any]], previous_summary: str, max_chars: int
    ) -> str:
        return reference_summarize(messages, previous_summary, max_chars, self.line_chars)


@settings(max_examples=150, deadline=None)
@given(conversation_messages, st.integers(2, 12), st.integers(100, 1500), st.integers(20, 160))
def test_compacting_a_conversation_matches_the_reference(
    steps: list[dict[str, Any]], max_recent: int, max_summary_chars: int, line_chars: int
) -> None:
    """Inline compaction with the fast summarizer sends the model exactly what the
    reference summarizer does, at every step: same summary, same recent messages,
    same compaction points and the same sizes reported."""
    states = [
        ConversationState(
            "s",
            max_recent=max_recent,
            max_recent_bytes=4096,
            max_summary_chars=max_summary_chars,
            summarizer=cls(line_chars),
        )
        for cls in (ExtractiveSummarizer, _ReferenceSummarizer)
    ]
    for message in _conversation(steps):
        for state in states:
            state.add_message(message)
        fast, reference = states
        assert fast.get_context() == reference.get_context()
        assert fast.compactions == reference.compactions
        assert fast.memory_estimate_bytes == reference.memory_estimate_bytes


def reference_split_point(
    messages: list[dict[str, Any]], window: Window, policy: StatePolicy
) -> int:
    """compaction.split_point before the fast path (the reference)."""
    keep = policy.keep_fraction
    max_count = max(1, math.floor(policy.max_recent * keep))
    max_bytes = policy.max_recent_bytes * keep
    max_tokens = None if policy.max_recent_tokens is None else policy.max_recent_tokens * keep
    n = len(messages)
    k = max(0, n - max_count)
    window_bytes = window.window_bytes - sum(window.sizes[:k])
    while k < n and window_bytes > max_bytes:
        window_bytes -= window.sizes[k]
        k += 1
    if max_tokens is not None and window.tokens:
        window_tokens = window.window_tokens - sum(window.tokens[:k])
        while k < n and window_tokens > max_tokens:
            window_tokens -= window.tokens[k]
            k += 1
    while k < n and messages[k].get("role") == "tool":
        k += 1
    return min(k, open_tool_group(messages))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "tool"]), st.integers(0, 3000)), max_size=30
    ),
    st.integers(1, 20),
    st.integers(1024, 20_000),
    st.none() | st.integers(1, 5000),
    st.floats(0.05, 1.0),
)
def test_split_point_equals_the_reference(
    drawn: list[tuple[str, int]],
    max_recent: int,
    max_bytes: int,
    max_tokens: int | None,
    keep: float,
) -> None:
    messages = [{"role": role, "content": "x"} for role, _ in drawn]
    sizes = array("q", [size for _, size in drawn])
    tokens = array("q", [size // 4 for _, size in drawn] if max_tokens is not None else [])
    policy = StatePolicy(
        max_recent=max_recent,
        max_recent_bytes=max_bytes,
        max_recent_tokens=max_tokens,
        token_counter=len if max_tokens is not None else None,
        keep_fraction=keep,
    )
    window = Window(sizes, tokens, sum(sizes), sum(tokens))
    assert split_point(messages, window, policy) == reference_split_point(messages, window, policy)


# ------------------------------------------------------------ estimate
def _getsizeof_estimate(state: ConversationState) -> int:
    """The estimate as it was first written, with sys.getsizeof."""
    return (
        sys.getsizeof(state)
        + sys.getsizeof(state._messages)
        + sys.getsizeof(state._sizes)
        + sys.getsizeof(state._tokens)
        + state._window_bytes
        + sys.getsizeof(state._summary)
    )


def test_state_estimate_is_the_getsizeof_formula_after_adds_and_compactions() -> None:
    state = ConversationState("s", max_recent=6, summarizer=ExtractiveSummarizer())
    hollow = sys.getsizeof(state)
    for turn in range(40):
        state.add_message({"role": "user", "content": f"question {turn} " * (turn % 7)})
        calls = [
            {"id": f"c{turn}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]
        state.add_message({"role": "assistant", "content": None, "tool_calls": calls})
        state.add_tool_result(f"c{turn}", "x" * (turn * 50))
        state.add_messages([{"role": "assistant", "content": "é" * turn}])
        assert state.memory_estimate_bytes == _getsizeof_estimate(state)
    assert state.compactions > 0
    state.unload()
    assert state.memory_estimate_bytes == hollow


# ---------------------------------------------------------------- books
lru_ops = st.lists(
    st.tuples(st.sampled_from(["add", "get", "evict", "delete", "hold"]), st.integers(0, 4)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(lru_ops)
def test_lru_order_and_byte_total_follow_a_model(ops: list[tuple[str, int]]) -> None:
    """The books skip reordering for the session in use: the LRU order, the evictions
    and the byte total must still be exactly what a plain list model says."""
    manager = SessionManager(max_sessions=3, store=MemoryStore(), max_recent=4)
    held: dict[str, ConversationState] = {}  # references kept across evictions
    order: list[str] = []  # the model: least recently used first
    for op, n in ops:
        sid = f"s{n}"
        if op == "add":
            state = held.get(sid) or manager.get_or_create(sid)
            state.add_message({"role": "user", "content": "x" * (n * 40)})
        elif op == "get":
            manager.get_or_create(sid)
        elif op == "hold":
            held[sid] = manager.get_or_create(sid)
        elif op == "evict":
            manager.evict(sid)
        else:
            manager.delete(sid)
            held.pop(sid, None)
        if op in ("add", "get", "hold"):
            order = [s for s in order if s != sid] + [sid]
            order = order[-3:]  # the least recently used leave first
        else:
            order = [s for s in order if s != sid]
        assert manager.live_ids() == order
        live = manager.live_states()
        assert manager.stats().estimated_bytes == sum(s.memory_estimate_bytes for s in live)
