"""The benchmark's agent turn, shared by tests so they exercise the real shape."""

from __future__ import annotations

import json
from typing import Any


def tool_result(turn: int, call: int, rows: int = 95) -> str:
    """~11 KB of JSON: a dict holding a list of row objects (the common tool shape)."""
    return json.dumps(
        {
            "query": f"turn {turn} call {call}",
            "rows": [
                {"id": i, "name": f"item-{turn}-{call}-{i}", "price": i * 1.25, "tags": ["a", "b"]}
                for i in range(rows)
            ],
            "count": rows,
        }
    )


def turn_messages(turn: int, tool_output: str | None = None) -> list[dict[str, Any]]:
    """One agent turn: user, assistant with 4 tool calls, 4 tool results, answer."""
    calls = [
        {
            "id": f"call_{turn}_{j}",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"turn": turn, "part": j})},
        }
        for j in range(4)
    ]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"question {turn}: " + "q" * 188},
        {"role": "assistant", "content": None, "tool_calls": calls},
    ]
    for j in range(4):
        content = tool_output if tool_output is not None else tool_result(turn, j)
        messages.append({"role": "tool", "tool_call_id": f"call_{turn}_{j}", "content": content})
    messages.append({"role": "assistant", "content": f"answer {turn}: " + "a" * 488})
    return messages
