"""The widely copied "memory-efficient agent" recipe, written from its description,
flaws included, so that beating it means something.

What the recipe does (and what ``docs``/DESIGN.md lists as its defects):

* ``ConversationState`` keeps a summary plus the last N messages; compaction is
  triggered by message *count* only (more than ``max_messages``), keeps the last
  ``keep_recent`` messages and **appends** the new summary to the old one, so the
  summary grows forever. The kept window is cut by count, so it can start with a
  ``tool`` result whose assistant ``tool_calls`` message was folded away.
* ``ToolOutputTruncator`` parses JSON and cuts a *top-level* list to 5 items or a
  *top-level* dict to 10 keys, then appends plain text after the JSON. The common
  tool shape - a dict of 3 keys holding a list of ~95 rows - passes untouched.
* Sizes are ``len(str(obj))``; ``SessionManager`` re-sums every session whenever it
  checks its limits, checks them only when a *new* session is created, and
  "persists" an evicted session with a no-op (asking for it again silently
  creates an empty one).

Nothing here is used by the package; it exists only as a benchmark peer.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

from .base import STUB_SUMMARY, ListPeer, Message

MB = 1024 * 1024


class ToolOutputTruncator:
    """The recipe's truncator: top-level list -> 5 items, top-level dict -> 10 keys."""

    def __init__(self, max_list_items: int = 5, max_dict_keys: int = 10, max_chars: int = 5000):
        self.max_list_items = max_list_items
        self.max_dict_keys = max_dict_keys
        self.max_chars = max_chars

    def truncate(self, output: str) -> str:
        try:
            data = json.loads(output)
        except ValueError:
            if len(output) > self.max_chars:
                return output[: self.max_chars] + "\n... [truncated]"
            return output
        if isinstance(data, list) and len(data) > self.max_list_items:
            kept = json.dumps(data[: self.max_list_items])
            return kept + f"\n... ({len(data) - self.max_list_items} more items)"
        if isinstance(data, dict) and len(data) > self.max_dict_keys:
            kept = json.dumps(dict(list(data.items())[: self.max_dict_keys]))
            return kept + f"\n... ({len(data) - self.max_dict_keys} more keys)"
        return output


class ConversationState:
    """Summary + last messages, compacted by count, summaries appended."""

    def __init__(
        self,
        session_id: str,
        summarize: Callable[[list[Message]], str],
        max_messages: int = 20,
        keep_recent: int = 10,
    ) -> None:
        self.session_id = session_id
        self.summarize = summarize
        self.max_messages = max_messages
        self.keep_recent = keep_recent
        self.messages: list[Message] = []
        self.summary = ""

    def add_message(self, message: Message) -> None:
        self.messages.append(message)
        if len(self.messages) > self.max_messages:
            self.compact()

    def compact(self) -> None:
        old = self.messages[: -self.keep_recent]
        self.messages = self.messages[-self.keep_recent :]
        self.summary = (self.summary + "\n" + self.summarize(old)).strip()

    def get_context(self) -> list[Message]:
        context: list[Message] = []
        if self.summary:
            context.append({"role": "system", "content": f"Conversation so far: {self.summary}"})
        return context + self.messages

    def estimate_size(self) -> int:
        return len(str(self.messages)) + len(self.summary)


class SessionManager:
    """LRU of states; limits checked on creation only, sizes re-summed every check."""

    def __init__(self, max_sessions: int = 100, max_memory_mb: float = 500) -> None:
        self.max_sessions = max_sessions
        self.max_memory_mb = max_memory_mb
        self.sessions: OrderedDict[str, ConversationState] = OrderedDict()
        self.summarize: Callable[[list[Message]], str] = lambda messages: STUB_SUMMARY
        self.window = (20, 10)

    def get_session(self, session_id: str) -> ConversationState:
        if session_id in self.sessions:
            self.sessions.move_to_end(session_id)
            return self.sessions[session_id]
        self._evict_if_needed()
        state = ConversationState(session_id, self.summarize, *self.window)
        self.sessions[session_id] = state
        return state

    def total_memory_mb(self) -> float:
        return sum(s.estimate_size() for s in self.sessions.values()) / MB

    def _evict_if_needed(self) -> None:
        while self.sessions and (
            len(self.sessions) >= self.max_sessions or self.total_memory_mb() > self.max_memory_mb
        ):
            session_id, state = self.sessions.popitem(last=False)
            self._persist(session_id, state)

    def _persist(self, session_id: str, state: ConversationState) -> None:
        pass  # "in production, write to Redis or a database here"


class ArticlePeer(ListPeer):
    """The recipe with room for every session (as ours gets), so memory is comparable."""

    name = "article"
    label = "article recipe"
    version = "benchmarks/peers/article.py"
    note = "written from the recipe's description; persistence is a no-op"
    persistent = True

    def __init__(self, max_messages: int = 20, keep_recent: int = 10) -> None:
        self.max_messages = max_messages
        self.keep_recent = keep_recent

    def setup(self, workdir: str, sessions: int = 1000) -> None:
        self.manager = SessionManager(max_sessions=sessions + 1, max_memory_mb=64 * 1024)
        self.manager.window = (self.max_messages, self.keep_recent)
        self.truncator = ToolOutputTruncator()

    def start(self, index: int) -> ConversationState:
        return self.manager.get_session(f"session-{index}")

    def add(self, handle: ConversationState, messages: list[Message]) -> None:
        for message in messages:
            if message["role"] == "tool":
                message = dict(message, content=self.truncator.truncate(message["content"]))
            handle.add_message(message)

    def model_input(self, handle: ConversationState) -> list[Message]:
        return handle.get_context()

    def restore(self, indices: list[int]) -> int:
        """What the recipe gives back for evicted sessions: new, empty ones."""
        fresh = SessionManager(max_sessions=len(indices) + 1)
        return sum(len(fresh.get_session(f"session-{i}").messages) for i in indices)
