"""The benchmark workload: N sessions x T turns of a realistic agent conversation.

A turn is a 200-char user message, an assistant message with 4 tool calls, 4
distinct ~11 KB JSON tool results (a dict holding a list of ~95 row objects)
and a 500-char answer. Every message is a fresh object, as it would be when
decoded from an API response, so nothing is shared between sessions.
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]


def tool_result(session: int, turn: int, call: int, rows: int = 95) -> str:
    """A distinct ~11 KB JSON document."""
    return json.dumps(
        {
            "query": f"s{session} t{turn} c{call}",
            "rows": [
                {
                    "id": i,
                    "name": f"item-{session}-{turn}-{call}-{i}",
                    "price": round(i * 1.25, 2),
                    "tags": ["alpha", "beta"],
                }
                for i in range(rows)
            ],
            "count": rows,
        }
    )


def tool_calls(session: int, turn: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{session}_{turn}_{j}",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"turn": turn, "part": j})},
        }
        for j in range(4)
    ]


def user_message(session: int, turn: int) -> Message:
    text = f"s{session} question {turn}: "
    return {"role": "user", "content": text + "q" * (200 - len(text))}


def answer_message(session: int, turn: int) -> Message:
    text = f"s{session} answer {turn}: "
    return {"role": "assistant", "content": text + "a" * (500 - len(text))}


def fresh(text: str) -> str:
    """A new str object with the same content (so pooled outputs are not shared)."""
    return text[:1] + text[1:]
