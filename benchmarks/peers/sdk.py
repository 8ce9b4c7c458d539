"""OpenAI Agents SDK peers: ``SQLiteSession`` (in memory or a file) and
``OpenAIResponsesCompactionSession``, optionally with ``ToolOutputTrimmer``.

The model input is built the way the SDK's Runner builds it, with its own
``prepare_input_with_session`` (session history + new input, orphan calls
dropped), so the context and the orphan check are the SDK's, not a guess. The
turn's input is saved first and the generated items after the turn, as the
Runner does. Compaction runs ``run_compaction()`` after each turn (the Runner's
automatic trigger needs a real model exchange to match against); its
``responses.compact`` call goes to a local stub that answers like the server
documents: every user message, then one opaque ``compaction`` item.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

from agents import SQLiteSession
from agents.memory import OpenAIResponsesCompactionSession
from agents.run_internal.session_persistence import prepare_input_with_session

from .. import workload
from .base import STUB_SUMMARY, Message, Observe, Outputs, Peer
from .lc import versions
from .simple import _file_bytes


class _StubCompact:
    """Stands in for ``AsyncOpenAI().responses.compact``: user messages + one compaction item."""

    calls = 0

    async def compact(self, **kwargs: Any) -> Any:
        self.calls += 1
        items = kwargs.get("input") or []
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        compaction = {"type": "compaction", "encrypted_content": STUB_SUMMARY}
        return SimpleNamespace(output=[*users, compaction], usage=None)


def to_chat(items: list[Any]) -> list[Message]:
    """Responses input items as OpenAI chat messages (for sizing and the orphan check)."""
    chat: list[Message] = []
    for item in items:
        kind = item.get("type")
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = chat[-1] if chat else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                chat.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            chat.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
        elif kind == "compaction":
            chat.append({"role": "system", "content": item["encrypted_content"]})
        else:
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            chat.append({"role": item.get("role", "user"), "content": content})
    return chat


def turn_items(index: int, turn: int, outputs: Outputs) -> tuple[Any, list[Any], list[Any], Any]:
    """The workload turn as Responses items: user, 4 function calls, 4 outputs, answer."""
    calls = workload.tool_calls(index, turn)
    function_calls = [
        {
            "type": "function_call",
            "id": f"fc_{c['id']}",
            "call_id": c["id"],
            "name": c["function"]["name"],
            "arguments": c["function"]["arguments"],
            "status": "completed",
        }
        for c in calls
    ]
    results = [
        {"type": "function_call_output", "call_id": c["id"], "output": outputs(index, turn, j)}
        for j, c in enumerate(calls)
    ]
    answer = {
        "type": "message",
        "id": f"msg_{index}_{turn}",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": workload.answer_message(index, turn)["content"],
                "annotations": [],
            }
        ],
    }
    return workload.user_message(index, turn), function_calls, results, answer


class SDKPeer(Peer):
    """``SQLiteSession`` in memory / in a file, or wrapped in the compaction session."""

    def __init__(self, kind: str = "memory", trimmer: bool = False, limit: int | None = None):
        self.kind = kind
        self.limit = limit
        self.trimmer: Any = None
        self.path = ""
        self.version = versions("openai-agents")
        self.persistent = self.write_through = kind == "file"
        self.name, self.label = {
            "memory": ("sdk-sqlite-mem", "Agents SDK SQLiteSession(':memory:')"),
            "file": ("sdk-sqlite-file", "Agents SDK SQLiteSession(file)"),
            "compaction": ("sdk-compaction", "Agents SDK OpenAIResponsesCompactionSession"),
        }[kind]
        if kind == "compaction":
            self.note = "over SQLiteSession(':memory:'); responses.compact stubbed locally"
        if trimmer:
            from agents.extensions.tool_output_trimmer import ToolOutputTrimmer

            self.trimmer = ToolOutputTrimmer()
            self.name += "+trimmer"
            self.label += " + ToolOutputTrimmer"
            self.note = "ToolOutputTrimmer() defaults; it filters the model input only"
        if limit is not None:
            self.name += f"+limit{limit}"
            self.label += f", SessionSettings(limit={limit})"
        self.loop = asyncio.new_event_loop()
        self.opened: list[Any] = []

    def setup(self, workdir: str, sessions: int = 1000) -> None:
        self.path = os.path.join(workdir, "agents.sqlite3")

    def _session(self, index: int) -> Any:
        db = self.path if self.kind == "file" else ":memory:"
        settings = {"limit": self.limit} if self.limit is not None else None
        session = SQLiteSession(f"session-{index}", db, session_settings=settings)
        self.opened.append(session)
        return session

    def start(self, index: int) -> Any:
        session = self._session(index)
        if self.kind == "compaction":
            return OpenAIResponsesCompactionSession(
                f"session-{index}",
                session,
                client=SimpleNamespace(responses=_StubCompact()),  # type: ignore[arg-type]
                model="gpt-4.1",
            )
        return session

    def turn(
        self,
        handle: Any,
        index: int,
        turn: int,
        outputs: Outputs,
        observe: Observe | None = None,
    ) -> None:
        self.loop.run_until_complete(self._turn(handle, index, turn, outputs, observe))

    async def _turn(
        self, session: Any, index: int, turn: int, outputs: Outputs, observe: Observe | None
    ) -> None:
        user, calls, results, answer = turn_items(index, turn, outputs)
        prepared, to_save = await prepare_input_with_session([user], session, None)
        await session.add_items(to_save)
        self._observe(observe, turn, list(prepared))
        self._observe(observe, turn, [*prepared, *calls, *results])
        await session.add_items([*calls, *results, answer])
        if self.kind == "compaction":
            await session.run_compaction()

    def _observe(self, observe: Observe | None, turn: int, items: list[Any]) -> None:
        if observe is None:
            return
        if self.trimmer is not None:
            from agents.run_config import CallModelData, ModelInputData

            data = CallModelData(ModelInputData(input=items, instructions=None), None, None)  # type: ignore[arg-type]
            items = self.trimmer(data).input
        observe(turn, to_chat(items))

    def disk_bytes(self) -> int:
        return _file_bytes(self.path) if self.kind == "file" else 0

    def restore(self, indices: list[int]) -> int:
        seen = 0
        for index in indices:
            session = self._session(index)
            seen += len(self.loop.run_until_complete(session.get_items()))
            session.close()
        return seen

    def close(self) -> None:
        """Close the sessions' connections (the event loop stays usable for restore)."""
        for session in self.opened:
            session.close()
        self.opened.clear()
