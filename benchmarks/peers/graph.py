"""LangGraph peers: a tool-calling graph with a checkpointer, plain or summarising.

The graph is the usual agent loop (model node -> tools node -> model node) with
``MessagesState``; a scripted chat model plays the workload (4 tool calls, then
the answer) and a ``lookup`` tool returns the workload's JSON. One ``invoke`` is
one turn, on ``thread_id = session-<i>``, so the checkpointer holds the
conversation exactly as a LangGraph app would. The summarising variant is
langchain v1's ``create_agent(..., middleware=[SummarizationMiddleware(...)])``
with the same scripted model, the stub summary model and ``InMemorySaver``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool

from .. import workload
from .base import TOKEN_BUDGET, Observe, Outputs, Peer
from .lc import StubSummaryModel, to_chat, versions
from .simple import _file_bytes


class _Script:
    """The turn being played: which session and turn, where outputs come from."""

    index = 0
    turn = 0
    outputs: Outputs | None = None
    observe: Observe | None = None

    def model_reply(self, messages: list[BaseMessage]) -> AIMessage:
        """Tool calls after the user's message, the answer after the tool results."""
        if self.observe is not None:
            self.observe(self.turn, to_chat(messages))
        if isinstance(messages[-1], ToolMessage):
            return AIMessage(content=workload.answer_message(self.index, self.turn)["content"])
        calls = [
            {"name": "lookup", "args": {"part": j}, "id": c["id"], "type": "tool_call"}
            for j, c in enumerate(workload.tool_calls(self.index, self.turn))
        ]
        return AIMessage(content="", tool_calls=calls)

    def lookup(self, part: int) -> str:
        assert self.outputs is not None
        return self.outputs(self.index, self.turn, part)


class ScriptedModel(BaseChatModel):
    """A chat model that plays the workload script (``bind_tools`` is accepted)."""

    script: Any = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self.script.model_reply(messages)
        return ChatResult(generations=[ChatGeneration(message=reply)])


class GraphPeer(Peer):
    """A LangGraph agent loop with ``InMemorySaver``, ``SqliteSaver`` or summarisation."""

    def __init__(
        self, kind: str = "memory", keep_messages: int = 20, trigger_tokens: int = TOKEN_BUDGET
    ) -> None:
        self.kind = kind
        self.keep_messages = keep_messages
        self.trigger_tokens = trigger_tokens
        self.script = _Script()
        self.path = ""
        self.conn: sqlite3.Connection | None = None
        self.version = versions("langgraph", "langgraph-checkpoint")
        if kind == "memory":
            self.name, self.label = "lg-memory", "LangGraph + InMemorySaver"
        elif kind == "sqlite":
            self.name, self.label = "lg-sqlite", "LangGraph + SqliteSaver"
            self.version = versions("langgraph", "langgraph-checkpoint-sqlite")
            self.persistent = self.write_through = True
        else:
            self.name, self.label = "lg-summarize", "create_agent + SummarizationMiddleware"
            self.version = versions("langchain", "langgraph")
            self.note = (
                f"trigger=('tokens', {trigger_tokens:,}), keep=('messages', {keep_messages}), "
                "InMemorySaver"
            )

    def _saver(self) -> Any:
        if self.kind == "sqlite":
            from langgraph.checkpoint.sqlite import SqliteSaver

            self.conn = sqlite3.connect(self.path, check_same_thread=False)
            return SqliteSaver(self.conn)
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()

    def setup(self, workdir: str, sessions: int = 1000) -> None:
        self.path = os.path.join(workdir, "langgraph.sqlite3")
        self.graph = self._build(self._saver())

    def _build(self, saver: Any) -> Any:
        script = self.script
        model = ScriptedModel(script=script)

        @tool
        def lookup(part: int) -> str:
            """Look rows up."""
            return script.lookup(part)

        if self.kind == "summarize":
            from langchain.agents import create_agent
            from langchain.agents.middleware import SummarizationMiddleware

            middleware = SummarizationMiddleware(
                model=StubSummaryModel(),
                trigger=("tokens", self.trigger_tokens),
                keep=("messages", self.keep_messages),
            )
            return create_agent(model, [lookup], middleware=[middleware], checkpointer=saver)
        from langgraph.graph import END, START, MessagesState, StateGraph
        from langgraph.prebuilt import ToolNode, tools_condition

        def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
            return {"messages": [model.invoke(state["messages"])]}

        builder = StateGraph(MessagesState)
        builder.add_node("agent", agent)
        builder.add_node("tools", ToolNode([lookup]))
        builder.add_edge(START, "agent")
        builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
        builder.add_edge("tools", "agent")
        return builder.compile(checkpointer=saver)

    def start(self, index: int) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"session-{index}"}}

    def turn(
        self,
        handle: Any,
        index: int,
        turn: int,
        outputs: Outputs,
        observe: Observe | None = None,
    ) -> None:
        script = self.script
        script.index, script.turn, script.outputs, script.observe = index, turn, outputs, observe
        user = workload.user_message(index, turn)["content"]
        self.graph.invoke({"messages": [HumanMessage(content=user)]}, handle)

    def disk_bytes(self) -> int:
        return _file_bytes(self.path) if self.kind == "sqlite" else 0

    def restore(self, indices: list[int]) -> int:
        graph = self._build(self._saver())
        seen = 0
        for index in indices:
            seen += len(graph.get_state(self.start(index)).values["messages"])
        return seen

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
