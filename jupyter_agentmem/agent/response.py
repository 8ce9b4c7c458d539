"""The lazy result of ``Agent.chat`` / ``Agent.achat`` (as in simonw/llm).

Iterating a response streams the turn on first use and replays the text
afterwards; ``events()`` gives every event but only once, on both sides: a
second ``events()`` raises instead of sending the request (and storing the
prompt) again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from jupyter_agentmem.errors import AgentMemError
from jupyter_agentmem.model.adapter import Finish, TextDelta, Usage

from .turn import ToolResult, TurnEvent

CONSUMED = "this response was already consumed; iterate it to replay text"


@dataclass
class TurnOptions:
    """Per-call choices; ``None`` means the configured default."""

    session: str = "default"
    model: str | None = None
    system: str | None = None
    tools: Iterable[str] | bool | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    namespace: Mapping[str, Any] | None = None


class Runner(Protocol):
    """What runs a response's turn (the Agent's two drivers)."""

    def _run(self, response: Response) -> Generator[TurnEvent, None, None]: ...

    def _arun(self, response: Response) -> AsyncGenerator[TurnEvent, None]: ...


class Response:
    """One turn. Iterate for text chunks (streams on first use, replays afterwards);
    after completion ``text``, ``usage``, ``tool_results``, ``model``, ``session``."""

    def __init__(self, agent: Runner, prompt: str, options: TurnOptions) -> None:
        self._agent = agent
        self.prompt = prompt
        self.options = options
        self.session = options.session
        self.model = ""
        self.is_demo = False
        self.usage: Usage | None = None
        self.tool_results: list[ToolResult] = []
        self.finish_reason: str | None = None
        self.interrupted = False
        self.done = False
        self.elapsed = 0.0
        self.session_bytes = 0
        self._chunks: list[str] = []
        self._started = False

    def _claim(self) -> None:
        """Mark the turn as started; a second start is an error on both sides."""
        if self._started or self.done:
            raise AgentMemError(CONSUMED)
        self._started = True

    def events(self) -> Generator[TurnEvent, None, None]:
        """All events (text, tool results, usage, finish); only once."""
        self._claim()
        return self._agent._run(self)

    def __iter__(self) -> Iterator[str]:
        if self._started or self.done:
            yield from list(self._chunks)
            return
        for event in self.events():
            if isinstance(event, TextDelta):
                yield event.text

    @property
    def text(self) -> str:
        """The answer (consumes the stream if nobody has yet)."""
        if not self._started and not self.done:
            for _ in self:
                pass
        return "".join(self._chunks)

    def _record(self, event: TurnEvent) -> None:
        if isinstance(event, TextDelta):
            self._chunks.append(event.text)
        elif isinstance(event, ToolResult):
            self.tool_results.append(event)
        elif isinstance(event, Usage):
            self.usage = _add_usage(self.usage, event)
        elif isinstance(event, Finish):
            self.finish_reason = event.reason


class AsyncResponse:
    """Async twin of :class:`Response`: ``async for chunk in response``."""

    def __init__(self, agent: Runner, prompt: str, options: TurnOptions) -> None:
        self._sync = Response(agent, prompt, options)
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)

    def events(self) -> AsyncGenerator[TurnEvent, None]:
        """All events, only once (a second call raises, as on the sync side)."""
        self._sync._claim()
        return self._agent._arun(self._sync)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        if self._sync._started or self._sync.done:
            for chunk in list(self._sync._chunks):
                yield chunk
            return
        async for event in self.events():
            if isinstance(event, TextDelta):
                yield event.text

    async def atext(self) -> str:
        async for _ in self:
            pass
        return "".join(self._sync._chunks)


def _add_usage(total: Usage | None, more: Usage) -> Usage:
    if total is None:
        return more
    return Usage(
        total.prompt_tokens + more.prompt_tokens,
        total.completion_tokens + more.completion_tokens,
        total.total_tokens + more.total_tokens,
    )
