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
from collections.abc import AsyncGenerator, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple

from jupyter_agentmem.errors import AgentMemError
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.memory.state import ConversationState
from jupyter_agentmem.memory.summarize import LLMSummarizer, Summarizer
from jupyter_agentmem.memory.truncate import ToolOutputTruncator
from jupyter_agentmem.model.adapter import describe_error
from jupyter_agentmem.model.tools import (
    Tool,
    ToolRegistry,
    acall_tool,
    call_tool,
    default_registry,
)

from .response import AsyncResponse, Response, TurnOptions
from .settings import AgentMem, Endpoint
from .turn import INTERRUPTED, CallModel, Done, ToolResult, TurnEvent, TurnLoop

log = logging.getLogger(__name__)

DEMO_NOTICE = (
    "demo model: set OPENAI_API_KEY, or `%agent_memory config base_url=... model=...`, "
    "for a real one"
)


class ModelError(AgentMemError):
    """The model request failed; the message says what to do. The session is unchanged."""


class _Run(NamedTuple):
    """A started turn: its loop, where it goes, and the session it commits to."""

    loop: TurnLoop
    endpoint: Endpoint
    state: ConversationState


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

    def _start(self, response: Response) -> _Run:
        """Resolve the endpoint, tools and session, and build the turn's loop."""
        options = response.options
        endpoint = self.endpoint(options.model)
        response.model, response.is_demo = endpoint.model, endpoint.is_demo
        tools = self._tools(options)
        state = self.manager.get_or_create(options.session)
        system = options.system if options.system is not None else self.config.system_prompt
        head = [{"role": "system", "content": system}] if system else []
        config = self.config
        request = {
            "model": endpoint.model,
            "temperature": config.temperature
            if options.temperature is None
            else options.temperature,
            "max_tokens": config.max_tokens if options.max_tokens is None else options.max_tokens,
        }
        loop = TurnLoop(
            prompt=response.prompt,
            context=lambda: head + state.get_context(),
            request=request,
            tools=tools,
            max_rounds=config.max_tool_rounds,
            truncate=self._truncator().truncate_ex,
            record=response._record,
        )
        return _Run(loop, endpoint, state)

    def _commit(self, response: Response, run: _Run, interrupted: bool) -> None:
        """Store the whole turn at once, then compact (inline, or later with the model)."""
        state = run.state
        llm_summary = self._summarizer(response) is not None
        state.add_messages(run.loop.messages(interrupted), auto_compact=not llm_summary)
        if run.loop.saved_chars:
            state.record_truncation(run.loop.saved_chars)
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

    @contextmanager
    def _guard(self, response: Response, run: _Run) -> Iterator[None]:
        """The commit rules of both drivers: an interrupt stores what was shown (marked),
        a failure stores nothing and becomes :class:`ModelError`, success stores all."""
        started = time.perf_counter()
        try:
            yield
        except (KeyboardInterrupt, GeneratorExit, asyncio.CancelledError):
            self._commit(response, run, interrupted=True)
            response.elapsed = time.perf_counter() - started
            raise
        except Exception as exc:
            response.elapsed = time.perf_counter() - started
            raise self._fail(exc, run.endpoint) from exc
        self._commit(response, run, interrupted=False)
        response.elapsed = time.perf_counter() - started

    def _run(self, response: Response) -> Generator[TurnEvent, None, None]:
        """The sync driver of :class:`~.turn.TurnLoop`: only the I/O lives here."""
        from jupyter_agentmem.model.adapter import stream_chat

        run = self._start(response)
        loop = run.loop
        with self._guard(response, run):
            client = self._client(run.endpoint)
            step = loop.next_step()
            while not isinstance(step, Done):
                if isinstance(step, CallModel):
                    for event in stream_chat(client, **step.request):
                        if (out := loop.on_event(event)) is not None:
                            yield out
                else:
                    for job in step.jobs:
                        t0 = time.perf_counter()
                        outcome = (
                            call_tool(job.tool, job.call.arguments) if job.tool else job.refusal()
                        )
                        yield loop.on_tool_outcome(job.call, outcome, time.perf_counter() - t0)
                step = loop.next_step()

    async def _arun(self, response: Response) -> AsyncGenerator[TurnEvent, None]:
        """The async driver: the same loop, awaiting the model and the tools."""
        from jupyter_agentmem.model.adapter import astream_chat

        run = await asyncio.to_thread(self._start, response)
        loop = run.loop
        with self._guard(response, run):
            client = self._client(run.endpoint, asynchronous=True)
            step = loop.next_step()
            while not isinstance(step, Done):
                if isinstance(step, CallModel):
                    async for event in astream_chat(client, **step.request):
                        if (out := loop.on_event(event)) is not None:
                            yield out
                else:
                    for job in step.jobs:
                        t0 = time.perf_counter()
                        tool = job.tool
                        outcome = (
                            await acall_tool(tool, job.call.arguments) if tool else job.refusal()
                        )
                        yield loop.on_tool_outcome(job.call, outcome, time.perf_counter() - t0)
                step = loop.next_step()


__all__ = [
    "DEMO_NOTICE",
    "INTERRUPTED",
    "Agent",
    "AsyncResponse",
    "ModelError",
    "Response",
    "ToolResult",
    "TurnEvent",
    "TurnOptions",
]
