"""The endpoints: chat runs over SSE, resumes, sessions, stats and health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from .deps import Served, ServedDep, SessionId, TenantDep, start_run
from .runs import EventsExpiredError, Run

MAX_MESSAGE_CHARS = 256 * 1024

OnDisconnect = Annotated[
    Literal["continue", "cancel"],
    Query(description="continue: the run goes on and its answer is stored; cancel: stop it"),
]


class ChatRequest(BaseModel):
    """``POST /chat``: a message for a session (created on first use)."""

    model_config = ConfigDict(extra="forbid")

    session: SessionId
    message: Annotated[StrictStr, Field(min_length=1, max_length=MAX_MESSAGE_CHARS)]
    model: StrictStr | None = None
    system: StrictStr | None = None
    tools: list[StrictStr] | bool | None = None


def turn_options(body: ChatRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if body.model is not None:
        options["model"] = body.model
    if body.system is not None:
        options["system"] = body.system
    if body.tools is not None:
        options["tools"] = body.tools
    return options


async def chat_run(
    body: ChatRequest,
    srv: ServedDep,
    who: TenantDep,
    multitask: Annotated[Literal["reject", "enqueue"], Query()] = "reject",
) -> Run:
    """Dependency of ``POST /chat``: runs before the stream starts, so 409 is a real status."""
    return start_run(
        srv, who, body.session, body.message, turn_options(body), multitask == "enqueue"
    )


async def stream_run(
    srv: Served, run: Run, after: int, cancel_on_disconnect: bool
) -> AsyncIterator[ServerSentEvent]:
    """The run's events after ``after`` as SSE; a client leaving cancels only if asked."""
    srv.runs.streams_open += 1
    try:
        async for item in run.subscribe(after):
            yield ServerSentEvent(raw_data=item.data(), event=item.event, id=str(item.id))
    except EventsExpiredError as exc:
        yield ServerSentEvent(raw_data=json.dumps({"message": str(exc)}), event="error")
    finally:
        srv.runs.streams_open -= 1
        if cancel_on_disconnect and not run.finished:
            srv.runs.cancel(run)


def add_chat_routes(api: APIRouter) -> None:
    """The page, health, chat and resume endpoints."""

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        """The chat page: one HTML file, no build step (it asks for the token itself)."""
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text("utf-8"))

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness for load balancers; needs no token."""
        return {"status": "ok"}

    @api.post("/chat", response_class=EventSourceResponse)
    async def chat(
        srv: ServedDep,
        run: Annotated[Run, Depends(chat_run)],
        on_disconnect: OnDisconnect = "continue",
    ) -> AsyncIterator[ServerSentEvent]:
        """Stream one answer: run, delta..., tool_call/tool_result, then done or error."""
        async for event in stream_run(srv, run, 0, on_disconnect == "cancel"):
            yield event

    @api.get("/runs/{run_id}/events", response_class=EventSourceResponse)
    async def run_events(
        run: Annotated[Run, Depends(resume_run)],
        srv: ServedDep,
        last_event_id: Annotated[int, Header(alias="Last-Event-ID", ge=0)] = 0,
        on_disconnect: OnDisconnect = "continue",
    ) -> AsyncIterator[ServerSentEvent]:
        """Resume a run: exactly the events after ``Last-Event-ID``."""
        async for event in stream_run(srv, run, last_event_id, on_disconnect == "cancel"):
            yield event


async def resume_run(
    run_id: str,
    srv: ServedDep,
    who: TenantDep,
    last_event_id: Annotated[int, Header(alias="Last-Event-ID", ge=0)] = 0,
) -> Run:
    """Dependency: the tenant's run (404 otherwise) whose events after the id are kept (410)."""
    run = srv.runs.get(run_id, who)
    if run is None:
        raise HTTPException(
            404, f"no run {run_id!r}: runs are kept {srv.runs.ttl:g} s after they end"
        )
    if last_event_id + 1 < run.first_kept:
        raise HTTPException(
            410, f"events after id {last_event_id} are no longer kept: GET /sessions/{run.session}"
        )
    return run


__all__ = ["ChatRequest", "add_chat_routes"]
