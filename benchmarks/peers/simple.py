"""The two ends of the scale: keep everything (naive) and our engine.

Our engine is driven exactly as ``benchmarks/bench_engine.py`` drives it: a
``SessionManager`` with its defaults except room for every session (so the
figures are the cost of a *live* session), messages through ``add_message`` and
tool results through ``add_tool_result`` (truncated by the engine). The
``agentmem-sqlite`` variant keeps the shipped defaults (1,000 live sessions,
500 MiB) and evicts to a SQLite file, which is how a kernel runs by default.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.memory.truncate import ToolOutputTruncator
from jupyter_agentmem.stores import MemoryStore, SQLiteStore

from .base import ListPeer, Message

GiB = 1024**3


class NaivePeer(ListPeer):
    """Every message kept in a list of dicts; the whole list is the context."""

    name = "naive"
    label = "naive list"
    version = "-"

    def start(self, index: int) -> list[Message]:
        return []

    def add(self, handle: list[Message], messages: list[Message]) -> None:
        handle.extend(messages)

    def model_input(self, handle: list[Message]) -> list[Message]:
        return handle


class EnginePeer(ListPeer):
    """jupyter-agentmem: bounded ConversationState under a SessionManager."""

    name = "agentmem"
    label = "jupyter-agentmem (ours)"
    version = "this repo"

    def __init__(self, sqlite: bool = False, **policy: Any) -> None:
        self.sqlite = sqlite
        self.policy = policy
        self.path = ""
        self.manager: SessionManager | None = None
        if sqlite:
            self.name = "agentmem-sqlite"
            self.label = "jupyter-agentmem, defaults + SQLite"
            self.persistent = True

    def setup(self, workdir: str, sessions: int = 1000) -> None:
        if self.sqlite:
            self.path = os.path.join(workdir, "agentmem.sqlite3")
            self.manager = SessionManager(store=SQLiteStore(self.path), **self.policy)
        else:
            self.manager = SessionManager(
                max_sessions=max(sessions, 1000),
                max_memory_bytes=64 * GiB,
                store=MemoryStore(),
                **self.policy,
            )

    def prepare_outputs(self, texts: list[str]) -> list[str]:
        """Truncate each distinct pool text once: what the engine stores is identical
        (truncation is deterministic and idempotent, checked below), and memory runs
        need not spend minutes re-truncating the same 64 texts. ``add_tool_result``
        still runs on every result; the throughput run uses raw texts."""
        truncator = ToolOutputTruncator()
        cut = [truncator.truncate(t) for t in texts]
        assert all(truncator.truncate(c) == c for c in cut), "truncation is not idempotent"
        return cut

    def start(self, index: int) -> Any:
        assert self.manager is not None
        return self.manager.get_or_create(f"session-{index}")

    def add(self, handle: Any, messages: list[Message]) -> None:
        for message in messages:
            if message["role"] == "tool":
                handle.add_tool_result(message["tool_call_id"], message["content"])
            else:
                handle.add_message(message)

    def model_input(self, handle: Any) -> list[Message]:
        return handle.get_context()  # type: ignore[no-any-return]

    def disk_bytes(self) -> int:
        return _file_bytes(self.path)

    def flush(self, handles: list[Any]) -> None:
        assert self.manager is not None
        self.manager.flush()

    def restore(self, indices: list[int]) -> int:
        manager = SessionManager(store=SQLiteStore(self.path))
        seen = 0
        for index in indices:
            seen += len(manager.get_or_create(f"session-{index}").recent_messages)
        manager.close()
        return seen

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()


def _file_bytes(path: str) -> int:
    """Size of a SQLite database with its WAL/journal files."""
    if not path:
        return 0
    return sum(
        os.path.getsize(path + suffix)
        for suffix in ("", "-wal", "-journal")
        if os.path.exists(path + suffix)
    )
