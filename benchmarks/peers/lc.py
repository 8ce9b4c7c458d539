"""LangChain peers: ``trim_messages`` stored back, and ``ConversationSummaryBufferMemory``.

Both get the same stub summary model (no network), and tokens are counted with
LangChain's own approximate counter (about 4 characters per token), the
counter its docs suggest when no tokenizer is at hand.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    ToolMessage,
    convert_to_openai_messages,
    trim_messages,
)
from langchain_core.outputs import ChatGeneration, ChatResult

from .base import STUB_SUMMARY, TOKEN_BUDGET, ListPeer, Message


def versions(*names: str) -> str:
    """``name version`` for each installed distribution."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


class StubSummaryModel(BaseChatModel):
    """A chat model that always answers with the fixed stub summary."""

    @property
    def _llm_type(self) -> str:
        return "stub-summary"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=STUB_SUMMARY))])

    def get_num_tokens(self, text: str) -> int:
        """Approximate, like ``count_tokens_approximately`` (no GPT-2 tokenizer download)."""
        return math.ceil(len(text) / 4)


def to_langchain(message: Message) -> BaseMessage:
    """One OpenAI chat dict as the LangChain message a LangChain agent would hold."""
    role = message["role"]
    if role == "user":
        return HumanMessage(content=message["content"])
    if role == "tool":
        return ToolMessage(content=message["content"], tool_call_id=message["tool_call_id"])
    calls = [
        {
            "name": c["function"]["name"],
            "args": json.loads(c["function"]["arguments"]),
            "id": c["id"],
            "type": "tool_call",
        }
        for c in message.get("tool_calls") or ()
    ]
    return AIMessage(content=message.get("content") or "", tool_calls=calls)


def to_chat(messages: list[BaseMessage]) -> list[Message]:
    return convert_to_openai_messages(messages)


class _History:
    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []


class TrimPeer(ListPeer):
    """``trim_messages(strategy="last", start_on="human")`` before each model call,
    the trimmed list stored back as the history (the documented pattern)."""

    name = "lc-trim"
    label = "LangChain trim_messages"
    note = f"max_tokens={TOKEN_BUDGET:,}, token_counter='approximate', stored back"

    def __init__(self, max_tokens: int = TOKEN_BUDGET) -> None:
        self.version = versions("langchain-core")
        self.max_tokens = max_tokens

    def start(self, index: int) -> _History:
        return _History()

    def add(self, handle: _History, messages: list[Message]) -> None:
        handle.messages.extend(to_langchain(m) for m in messages)

    def model_input(self, handle: _History) -> list[BaseMessage]:
        handle.messages = trim_messages(
            handle.messages,
            max_tokens=self.max_tokens,
            token_counter="approximate",
            strategy="last",
            start_on="human",
        )
        return handle.messages

    def to_chat(self, native: Any) -> list[Message]:
        return to_chat(native)


class SummaryBufferPeer(ListPeer):
    """langchain-classic's ``ConversationSummaryBufferMemory``: messages are added to its
    chat history and pruned (oldest first, into a summary) as ``save_context`` does;
    ``save_context`` itself only takes input/output strings, not tool messages."""

    name = "lc-summary-buffer"
    label = "LangChain ConversationSummaryBufferMemory"
    note = f"langchain-classic, max_token_limit={TOKEN_BUDGET:,}, prune() after each add"

    def __init__(self, max_tokens: int = TOKEN_BUDGET) -> None:
        self.version = versions("langchain-classic")
        self.max_tokens = max_tokens
        self.model = StubSummaryModel()

    def start(self, index: int) -> Any:
        from langchain_classic.memory import ConversationSummaryBufferMemory

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ConversationSummaryBufferMemory(
                llm=self.model, max_token_limit=self.max_tokens, return_messages=True
            )

    def add(self, handle: Any, messages: list[Message]) -> None:
        handle.chat_memory.add_messages([to_langchain(m) for m in messages])
        handle.prune()

    def model_input(self, handle: Any) -> list[BaseMessage]:
        return handle.load_memory_variables({})["history"]  # type: ignore[no-any-return]

    def to_chat(self, native: Any) -> list[Message]:
        return to_chat(native)
