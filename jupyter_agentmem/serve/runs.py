"""Runs: one answer of the agent, executed apart from the HTTP request that asked for it.

A run is an asyncio task that turns :meth:`Agent.achat` events into numbered SSE
events kept in a bounded buffer. Clients *subscribe* to a run: the first client
is the ``POST /chat`` that started it, later ones resume with ``Last-Event-ID``
after a disconnect and receive exactly the events after that id. The run does
not depend on any client: it keeps going when they leave (unless asked to
cancel), so its answer is stored either way.

Bounds: each run keeps at most ``max_run_bytes`` of events (oldest dropped; a
resume from before the kept window gets a clear error; a connected reader that
is behind holds them up to 4 times that, then is cut off), finished runs are
forgotten ``ttl`` seconds after they end, and at most ``max_runs`` are kept.
One run per session at a time: a second one is refused (409) or waits its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from jupyter_agentmem.agent.chat import Agent, ToolResult
from jupyter_agentmem.model.adapter import TextDelta, ToolCall

log = logging.getLogger(__name__)

#: Events a client can receive, in the order a run produces them.
EVENT_TYPES = ("run", "delta", "tool_call", "tool_result", "done", "error")


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One SSE event. ``payload`` is the JSON data, or for ``delta`` just the text
    (serialised when sent, so merged deltas are encoded once)."""

    id: int
    event: str
    payload: str

    def data(self) -> str:
        if self.event == "delta":
            return _dumps({"text": self.payload})
        return self.payload


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


#: A connected reader keeps events beyond ``max_bytes`` up to this many times it.
HARD_CAP_FACTOR = 4


class SessionBusyError(Exception):
    """The session already has a run in progress (HTTP 409)."""


class EventsExpiredError(Exception):
    """The events after the client's Last-Event-ID are no longer kept (HTTP 410)."""


@dataclass
class Run:
    """One answer's events and life cycle; see the module docstring."""

    run_id: str
    tenant: str
    session: str
    key: str
    max_bytes: int
    events: deque[RunEvent] = field(default_factory=deque)
    bytes: int = 0
    next_id: int = 1
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    cancelled: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _cursors: dict[int, int] = field(default_factory=dict)
    _reader_ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def first_kept(self) -> int:
        return self.events[0].id if self.events else self.next_id

    def emit(self, event: str, payload: dict[str, Any] | str) -> None:
        """Append an event (drops the oldest beyond ``max_bytes``) and wake subscribers."""
        text = payload if isinstance(payload, str) else _dumps(payload)
        self.events.append(RunEvent(self.next_id, event, text))
        self.next_id += 1
        self.bytes += len(text)
        self._trim()
        self._changed.set()

    def _trim(self) -> None:
        while self.bytes > self.max_bytes and len(self.events) > 1:
            unread = min(self._cursors.values(), default=self.next_id) < self.events[0].id
            if unread and self.bytes <= HARD_CAP_FACTOR * self.max_bytes:
                break  # a connected reader still needs it (it is behind, not gone)
            self.bytes -= len(self.events.popleft().payload)

    def finish(self) -> None:
        self.finished_at = time.monotonic()
        self._changed.set()

    def _check(self, after: int) -> None:
        if after + 1 < self.first_kept:
            raise EventsExpiredError(
                f"events after id {after} of run {self.run_id} are no longer kept (the "
                f"oldest kept is {self.first_kept}): read the session with GET /sessions/"
            )

    async def subscribe(self, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events with id > ``after``, live until the run ends.

        Consecutive deltas already waiting are merged into one event carrying the
        last id (coalescing under load; the concatenated text is unchanged).
        """
        self._check(after)
        token = next(self._reader_ids)
        self._cursors[token] = after
        try:
            while True:
                start = max(0, after + 1 - self.first_kept)
                pending = list(itertools.islice(self.events, start, None))
                if pending:
                    for item in _coalesce(pending):
                        yield item
                        after = self._cursors[token] = item.id
                    continue
                if self.finished:
                    return
                self._changed.clear()
                await self._changed.wait()
                self._check(after)
        finally:
            del self._cursors[token]
            self._trim()


def _coalesce(events: list[RunEvent]) -> list[RunEvent]:
    out: list[RunEvent] = []
    for item in events:
        if item.event == "delta" and out and out[-1].event == "delta":
            out[-1] = RunEvent(item.id, "delta", out[-1].payload + item.payload)
        else:
            out.append(item)
    return out


class _Lease:
    """One session's turn-taking: the runs holding or waiting for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class RunRegistry:
    """The app's runs, by id, with one active run per session key (a lease)."""

    def __init__(
        self,
        agent: Agent,
        *,
        ttl: float = 120.0,
        max_run_bytes: int = 256 * 1024,
        max_runs: int = 10_000,
    ) -> None:
        self.agent = agent
        self.ttl = ttl
        self.max_run_bytes = max_run_bytes
        self.max_runs = max_runs
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._leases: dict[str, _Lease] = {}
        self.counts = {"started": 0, "done": 0, "error": 0, "cancelled": 0}
        self.streams_open = 0

    # ------------------------------------------------------------------ lookup
    def get(self, run_id: str, tenant: str) -> Run | None:
        """The run if it exists, is still kept, and belongs to ``tenant``."""
        self._expire()
        run = self._runs.get(run_id)
        return run if run is not None and run.tenant == tenant else None

    def active(self) -> int:
        """Runs started and not finished (running or waiting for their session)."""
        return sum(lease.users for lease in self._leases.values())

    def kept(self) -> int:
        return len(self._runs)

    def busy(self, key: str) -> bool:
        lease = self._leases.get(key)
        return lease is not None and lease.users > 0

    def _expire(self) -> None:
        now = time.monotonic()
        while self._runs:
            run_id, run = next(iter(self._runs.items()))
            expired = run.finished_at is not None and now - run.finished_at > self.ttl
            if not expired and not (len(self._runs) > self.max_runs and run.finished):
                break
            del self._runs[run_id]

    # ------------------------------------------------------------------- start
    def start(
        self,
        tenant: str,
        session: str,
        key: str,
        message: str,
        options: dict[str, Any],
        *,
        enqueue: bool = False,
    ) -> Run:
        """Create a run and its task; :class:`SessionBusyError` unless ``enqueue``."""
        if self.busy(key) and not enqueue:
            raise SessionBusyError(
                f"session {session!r} is answering another message: wait for its `done` "
                "event, or POST with ?multitask=enqueue to queue this one"
            )
        self._expire()
        if self.active() >= self.max_runs:
            raise SessionBusyError("too many runs in progress: retry in a moment")
        run = Run(secrets.token_urlsafe(12), tenant, session, key, self.max_run_bytes)
        run.emit("run", {"run_id": run.run_id, "session": session})
        self._runs[run.run_id] = run
        lease = self._leases.setdefault(key, _Lease())
        lease.users += 1
        run.task = asyncio.get_running_loop().create_task(
            self._execute(run, lease, message, options), name=f"agentmem-run-{run.run_id}"
        )
        self.counts["started"] += 1
        return run

    async def _execute(
        self, run: Run, lease: _Lease, message: str, options: dict[str, Any]
    ) -> None:
        started = False
        try:
            async with lease.lock:
                started = True
                await self._turn(run, message, options)
        except asyncio.CancelledError:
            if not started:
                run.cancelled = True
                self.counts["cancelled"] += 1
                run.emit("error", {"message": "cancelled before it started; nothing was stored"})
            raise
        finally:
            lease.users -= 1
            if lease.users == 0 and self._leases.get(run.key) is lease:
                del self._leases[run.key]
            run.finish()

    async def _turn(self, run: Run, message: str, options: dict[str, Any]) -> None:
        """Stream the agent's events into the run; ``done`` only after the turn is stored."""
        response = self.agent.achat(message, session=run.key, **options)
        texts: list[str] = []
        announced: set[str] = set()
        try:
            async for event in response.events():
                if isinstance(event, TextDelta):
                    texts.append(event.text)
                    run.emit("delta", event.text)
                elif isinstance(event, ToolCall):
                    announced.add(event.id)
                    run.emit("tool_call", _call(event))
                elif isinstance(event, ToolResult):
                    if event.call.id not in announced:
                        run.emit("tool_call", _call(event.call))
                    run.emit("tool_result", _result(event))
        except asyncio.CancelledError:
            run.cancelled = True
            self.counts["cancelled"] += 1
            run.emit("done", _done(run, texts, response, interrupted=True))
            raise
        except Exception as exc:
            self.counts["error"] += 1
            log.info("run %s failed: %s", run.run_id, exc)
            run.emit("error", {"message": str(exc) or type(exc).__name__})
            return
        self.counts["done"] += 1
        run.emit("done", _done(run, texts, response, interrupted=False))

    def cancel(self, run: Run) -> None:
        """Stop a run; the agent stores the partial answer marked as interrupted."""
        if run.task is not None and not run.task.done():
            run.task.cancel()

    async def aclose(self) -> None:
        """Cancel every unfinished run and wait for them (partial answers are stored)."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def _result(result: ToolResult) -> dict[str, Any]:
    return {
        "id": result.call.id,
        "name": result.call.name,
        "content": result.content,
        "error": result.error,
        "seconds": round(result.seconds, 6),
        "saved_chars": result.saved_chars,
    }


def _done(run: Run, texts: list[str], response: Any, *, interrupted: bool) -> dict[str, Any]:
    usage = getattr(response, "usage", None)
    return {
        "run_id": run.run_id,
        "session": run.session,
        "text": "".join(texts),
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "interrupted": interrupted,
    }
