"""The agent loop: a prompt in, a streamed answer out, tools run, memory kept bounded.

``Agent.chat`` returns a lazy :class:`Response`: iterating it streams the text
as it arrives, iterating again replays it, and completion commits the whole
turn to the session at once. A failed turn stores nothing (so a retry does not
duplicate the question); an interrupted one stores what was shown, marked as
interrupted. Tool results are truncated *before* they enter the context or the
session. Nothing here knows about IPython: the magic only renders events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jupyter_agentmem.errors import AgentMemError
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.memory.state import ConversationState
from jupyter_agentmem.memory.summarize import LLMSummarizer, Summarizer
from jupyter_agentmem.memory.truncate import ToolOutputTruncator
from jupyter_agentmem.model.adapter import Event, Finish, TextDelta, ToolCall, Usage, describe_error
from jupyter_agentmem.model.tools import (
    Tool,
    ToolOutcome,
    ToolRegistry,
    acall_tool,
    call_tool,
    default_registry,
)

from .settings import AgentMem, Endpoint

log = logging.getLogger(__name__)

INTERRUPTED = "\n\n[interrupted by the user]"
DEMO_NOTICE = (
    "demo model: set OPENAI_API_KEY, or `%agent_memory config base_url=... model=...`, "
    "for a real one"
)


class ModelError(AgentMemError):
    """The model request failed; the message says what to do. The session is unchanged."""


@dataclass(frozen=True)
class ToolResult:
    """A tool call and its (already truncated) result, as stored in the session."""

    call: ToolCall
    content: str
    error: str | None
    seconds: float
    saved_chars: int


TurnEvent = Event | ToolResult


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


@dataclass
class _Turn:
    """What the running turn has produced so far (committed at the end)."""

    state: ConversationState
    staged: list[dict[str, Any]]
    text: list[str] = field(default_factory=list)
    pending: list[ToolCall] = field(default_factory=list)
    saved: int = 0


class Response:
    """One turn. Iterate for text chunks (streams on first use, replays afterwards);
    after completion ``text``, ``usage``, ``tool_results``, ``model``, ``session``."""

    def __init__(self, agent: Agent, prompt: str, options: TurnOptions) -> None:
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
        self._events: Generator[TurnEvent, None, None] | None = None

    def events(self) -> Generator[TurnEvent, None, None]:
        """All events (text, tool results, usage, finish); only once."""
        if self._events is not None or self.done:
            raise AgentMemError("this response was already consumed; iterate it to replay text")
        self._events = self._agent._run(self)
        return self._events

    def __iter__(self) -> Iterator[str]:
        if self.done or self._events is not None:
            yield from list(self._chunks)
            return
        for event in self.events():
            if isinstance(event, TextDelta):
                yield event.text

    @property
    def text(self) -> str:
        """The answer (consumes the stream if nobody has yet)."""
        if not self.done and self._events is None:
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

    def __init__(self, agent: Agent, prompt: str, options: TurnOptions) -> None:
        self._sync = Response(agent, prompt, options)
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)

    async def events(self) -> AsyncIterator[TurnEvent]:
        async for event in self._agent._arun(self._sync):
            yield event

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        if self._sync.done:
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


class Agent:
    """Talks to an OpenAI-compatible model on behalf of the sessions of a manager."""

    def __init__(
        self,
        manager: SessionManager,
        config: AgentMem | None = None,
        registry: ToolRegistry | None = None,
    ) -> None:
        self.manager = manager
        self.config = config or AgentMem()
        self.registry = registry or default_registry
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[str, str, bool, float, int], Any] = OrderedDict()
        self._demo: Any = None
        self._compactor: ThreadPoolExecutor | None = None
        self._compacting: set[str] = set()
        self._truncator_cache: ToolOutputTruncator | None = None
        self.demo_notice_shown = False

    # ---------------------------------------------------------------- clients
    def endpoint(self, model: str | None = None) -> Endpoint:
        resolved = self.config.endpoint()
        if model and model != resolved.model:
            demo = model == "demo"
            return Endpoint(model, "" if demo else resolved.base_url, demo, False)
        return resolved

    def _base_url(self, endpoint: Endpoint) -> str | None:
        if endpoint.is_demo:
            with self._lock:
                if self._demo is None:
                    from jupyter_agentmem.demo import DemoServer

                    self._demo = DemoServer(delay=self.config.demo_delay).start()
                return str(self._demo.base_url)
        return endpoint.base_url or None

    def _client(self, endpoint: Endpoint, asynchronous: bool = False) -> Any:
        """A cached SDK client per endpoint and key (the key itself is never kept here)."""
        from jupyter_agentmem.model.adapter import make_async_client, make_client

        base_url = self._base_url(endpoint)
        key = None if endpoint.is_demo else os.environ.get(self.config.api_key_env) or None
        fingerprint = hashlib.sha256((key or "").encode()).hexdigest()[:16]
        cache_key = (
            base_url or "",
            fingerprint,
            asynchronous,
            self.config.timeout,
            self.config.max_retries,
        )
        with self._lock:
            client = self._clients.get(cache_key)
            if client is not None:
                self._clients.move_to_end(cache_key)
                return client
        factory = make_async_client if asynchronous else make_client
        try:
            client = factory(
                base_url,
                "demo" if endpoint.is_demo else key,
                timeout=self.config.timeout,
                max_retries=self.config.max_retries,
            )
        except Exception as exc:
            raise ModelError(describe_error(exc)) from exc
        with self._lock:
            self._clients[cache_key] = client
            while len(self._clients) > 4:
                self._clients.popitem(last=False)
        return client

    # ------------------------------------------------------------------ public
    def chat(self, prompt: str, session: str = "default", **options: Any) -> Response:
        """Start a turn; iterate the returned :class:`Response` to stream it."""
        return Response(self, prompt, TurnOptions(session=session, **options))

    def achat(self, prompt: str, session: str = "default", **options: Any) -> AsyncResponse:
        """Async twin of :meth:`chat`: ``async for chunk in agent.achat(...)``."""
        return AsyncResponse(self, prompt, TurnOptions(session=session, **options))

    def close(self) -> None:
        """Stop the demo server and the compaction worker; close SDK clients."""
        with self._lock:
            demo, self._demo = self._demo, None
            compactor, self._compactor = self._compactor, None
            clients = [c for k, c in self._clients.items() if not k[2]]
            self._clients.clear()
        if compactor is not None:
            compactor.shutdown(wait=True, cancel_futures=True)
        for client in clients:
            try:
                client.close()
            except Exception:
                log.debug("closing an SDK client failed", exc_info=True)
        if demo is not None:
            demo.stop()

    # ------------------------------------------------------------------ turns
    def _tools(self, options: TurnOptions) -> list[Tool]:
        if options.tools is False:
            return []
        names = None if options.tools in (None, True) else list(options.tools)  # type: ignore[arg-type]
        return self.registry.select(names, options.namespace)

    def _truncator(self) -> ToolOutputTruncator:
        """The truncator for tool results, rebuilt when ``tool_max_chars`` changes."""
        limit = self.config.tool_max_chars
        with self._lock:
            if self._truncator_cache is None or self._truncator_cache.max_chars != limit:
                self._truncator_cache = ToolOutputTruncator(max_chars=limit)
            return self._truncator_cache

    def _prepare(self, response: Response) -> tuple[_Turn, Endpoint, list[Tool], dict[str, Any]]:
        options = response.options
        endpoint = self.endpoint(options.model)
        response.model, response.is_demo = endpoint.model, endpoint.is_demo
        tools = self._tools(options)
        state = self.manager.get_or_create(options.session)
        turn = _Turn(state, [{"role": "user", "content": response.prompt}])
        settings = {
            "temperature": options.temperature
            if options.temperature is not None
            else self.config.temperature,
            "max_tokens": options.max_tokens
            if options.max_tokens is not None
            else self.config.max_tokens,
        }
        return turn, endpoint, tools, settings

    def _context(self, turn: _Turn, options: TurnOptions) -> list[dict[str, Any]]:
        system = options.system if options.system is not None else self.config.system_prompt
        head = [{"role": "system", "content": system}] if system else []
        return head + turn.state.get_context() + turn.staged

    def _tool_round(self, turn: _Turn, calls: list[ToolCall]) -> None:
        turn.staged.append(
            {
                "role": "assistant",
                "content": "".join(turn.text) or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ],
            }
        )
        turn.text = []
        turn.pending = list(calls)

    def _stream_args(
        self,
        turn: _Turn,
        response: Response,
        endpoint: Endpoint,
        specs: list[dict[str, Any]],
        round_number: int,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        """One request: the context so far; tools offered except on the last allowed round."""
        offer = specs if specs and round_number < self.config.max_tool_rounds else None
        return {
            "model": endpoint.model,
            "messages": self._context(turn, response.options),
            "tools": offer,
            **settings,
        }

    @staticmethod
    def _absorb(turn: _Turn, response: Response, event: Event, calls: list[ToolCall]) -> bool:
        """Record one stream event; returns False for tool calls (run after the stream)."""
        if isinstance(event, ToolCall):
            calls.append(event)
            return False
        if isinstance(event, TextDelta):
            turn.text.append(event.text)
        response._record(event)
        return True

    def _tool_result(
        self, turn: _Turn, response: Response, call: ToolCall, outcome: ToolOutcome, started: float
    ) -> ToolResult:
        """Stage a tool's (truncated) result for the model and the session."""
        if outcome.error is not None:
            content, saved, error = f"Error: {outcome.error}", 0, outcome.error
        else:
            truncated = self._truncator().truncate_ex(outcome.value)
            content, saved, error = truncated.text, truncated.saved_chars, None
        turn.staged.append({"role": "tool", "tool_call_id": call.id, "content": content})
        turn.pending.remove(call)
        turn.saved += saved
        result = ToolResult(call, content, error, time.perf_counter() - started, saved)
        response._record(result)
        return result

    def _commit(self, response: Response, turn: _Turn, interrupted: bool) -> None:
        staged = turn.staged
        if interrupted:
            for call in turn.pending:
                staged.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": "Error: interrupted before this tool ran",
                    }
                )
            partial = "".join(turn.text)
            staged.append({"role": "assistant", "content": partial + INTERRUPTED})
        else:
            staged.append({"role": "assistant", "content": "".join(turn.text)})
        state = turn.state
        llm_summary = self._summarizer(response) is not None
        state.add_messages(staged, auto_compact=not llm_summary)
        if turn.saved:
            state.record_truncation(turn.saved)
        response.session_bytes = state.memory_estimate_bytes
        response.interrupted = interrupted
        response.done = True
        if llm_summary and state.needs_compaction():
            self._compact_later(state, response)

    def _summarizer(self, response: Response) -> Summarizer | None:
        """The LLM summarizer to use after this turn, or None for inline extractive."""
        mode = self.config.summarizer
        if mode == "extractive" or (mode == "auto" and response.is_demo):
            return None
        endpoint = self.endpoint(response.options.model)
        return LLMSummarizer(self._client(endpoint), endpoint.model)

    def _compact_later(self, state: ConversationState, response: Response) -> None:
        """Compact with the model in a worker thread so the answer is not delayed."""
        summarizer = self._summarizer(response)
        if summarizer is None:
            return
        with self._lock:
            if state.session_id in self._compacting:
                return
            self._compacting.add(state.session_id)
            if self._compactor is None:
                self._compactor = ThreadPoolExecutor(1, thread_name_prefix="agentmem-compact")
            compactor = self._compactor

        def job() -> None:
            try:
                state.compact(summarizer)
            except Exception as exc:  # the messages stay; state.last_error says why
                log.warning("session %r: compaction failed: %s", state.session_id, exc)
            finally:
                with self._lock:
                    self._compacting.discard(state.session_id)

        compactor.submit(job)

    def _fail(self, exc: Exception, endpoint: Endpoint) -> ModelError:
        if isinstance(exc, ModelError):
            return exc
        key = None if endpoint.is_demo else os.environ.get(self.config.api_key_env)
        return ModelError(describe_error(exc, api_key=key))

    def _run(self, response: Response) -> Generator[TurnEvent, None, None]:
        """The sync turn: stream, run tools, repeat up to ``max_tool_rounds``, commit."""
        from jupyter_agentmem.model.adapter import stream_chat

        started = time.perf_counter()
        turn, endpoint, tools, settings = self._prepare(response)
        specs = [t.spec for t in tools]
        by_name = {t.name: t for t in tools}
        try:
            client = self._client(endpoint)
            for round_number in range(self.config.max_tool_rounds + 1):
                calls: list[ToolCall] = []
                args = self._stream_args(turn, response, endpoint, specs, round_number, settings)
                for event in stream_chat(client, **args):
                    if self._absorb(turn, response, event, calls):
                        yield event
                if not calls:
                    break
                self._tool_round(turn, calls)
                for call in calls:
                    t0, tool = time.perf_counter(), by_name.get(call.name)
                    outcome = call_tool(tool, call.arguments) if tool else _unknown(call, by_name)
                    yield self._tool_result(turn, response, call, outcome, t0)
        except (KeyboardInterrupt, GeneratorExit):
            self._commit(response, turn, interrupted=True)
            response.elapsed = time.perf_counter() - started
            raise
        except Exception as exc:
            response.elapsed = time.perf_counter() - started
            raise self._fail(exc, endpoint) from exc
        self._commit(response, turn, interrupted=False)
        response.elapsed = time.perf_counter() - started

    async def _arun(self, response: Response) -> AsyncIterator[TurnEvent]:
        """Async twin of :meth:`_run` (same events, same commit rules)."""
        from jupyter_agentmem.model.adapter import astream_chat

        started = time.perf_counter()
        turn, endpoint, tools, settings = await asyncio.to_thread(self._prepare, response)
        specs = [t.spec for t in tools]
        by_name = {t.name: t for t in tools}
        try:
            client = self._client(endpoint, asynchronous=True)
            for round_number in range(self.config.max_tool_rounds + 1):
                calls: list[ToolCall] = []
                args = self._stream_args(turn, response, endpoint, specs, round_number, settings)
                async for event in astream_chat(client, **args):
                    if self._absorb(turn, response, event, calls):
                        yield event
                if not calls:
                    break
                self._tool_round(turn, calls)
                for call in calls:
                    t0, tool = time.perf_counter(), by_name.get(call.name)
                    outcome = (
                        await acall_tool(tool, call.arguments) if tool else _unknown(call, by_name)
                    )
                    yield self._tool_result(turn, response, call, outcome, t0)
        except (KeyboardInterrupt, asyncio.CancelledError, GeneratorExit):
            self._commit(response, turn, interrupted=True)
            response.elapsed = time.perf_counter() - started
            raise
        except Exception as exc:
            response.elapsed = time.perf_counter() - started
            raise self._fail(exc, endpoint) from exc
        self._commit(response, turn, interrupted=False)
        response.elapsed = time.perf_counter() - started


def _unknown(call: ToolCall, known: Mapping[str, Tool]) -> ToolOutcome:
    names = ", ".join(sorted(known)) or "none"
    return ToolOutcome(None, f"there is no tool named {call.name!r} (available: {names})")


__all__ = ["Agent", "AsyncResponse", "ModelError", "Response", "ToolResult", "TurnOptions"]
