"""Session endpoints: a tenant lists, reads and deletes only its own sessions.

Manager calls may touch the store (SQLite, Redis), so these endpoints are plain
``def``: FastAPI runs them in its thread pool and the event loop keeps streaming.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .deps import Served, ServedDep, TenantDep
from .metrics import render

SessionPath = Annotated[str, Path(min_length=1, max_length=256)]


def _missing(session: str) -> HTTPException:
    return HTTPException(404, f"no session {session!r}: POST /chat creates one")


def _row(session: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "session": session,
        "in_memory": row.get("in_memory"),
        "messages": row.get("messages"),
        "turns": row.get("turns"),
        "messages_total": row.get("messages_total"),
        "estimated_bytes": row.get("estimated_bytes"),
    }


def list_sessions(srv: Served, who: str) -> list[dict[str, Any]]:
    rows = []
    for row in srv.manager.list_sessions():
        own = srv.tenants.owns(who, row["session_id"])
        if own is not None:
            rows.append(_row(own, row))
    return rows


def session_view(srv: Served, who: str, session: str) -> dict[str, Any]:
    """What a client may see of one session (404 if it is not this tenant's)."""
    state = srv.manager.get(srv.tenants.key(who, session))
    if state is None:
        raise _missing(session)
    recent = state.recent_messages
    return {
        "session": session,
        "summary": state.summary,
        "messages": recent,
        "turns": state.turns,
        "messages_total": state.messages_total,
        "compactions": state.compactions,
        "estimated_bytes": state.memory_estimate_bytes,
        "busy": srv.runs.busy(srv.tenants.key(who, session)),
    }


def stats(srv: Served) -> dict[str, Any]:
    return {
        "manager": srv.manager.stats().as_dict(),
        "memory": dict(srv.monitor.check()),
        "runs": {
            **srv.runs.counts,
            "active": srv.runs.active(),
            "kept": srv.runs.kept(),
            "streams_open": srv.runs.streams_open,
        },
    }


def add_session_routes(api: APIRouter) -> None:
    @api.get("/sessions")
    def sessions(srv: ServedDep, who: TenantDep) -> dict[str, Any]:
        """This tenant's sessions with their sizes."""
        return {"sessions": list_sessions(srv, who)}

    @api.get("/sessions/{session:path}")
    def session(session: SessionPath, srv: ServedDep, who: TenantDep) -> dict[str, Any]:
        """Summary, recent messages and figures of one session."""
        return session_view(srv, who, session)

    @api.delete("/sessions/{session:path}")
    def delete_session(session: SessionPath, srv: ServedDep, who: TenantDep) -> dict[str, Any]:
        """Forget a session everywhere (memory and store)."""
        key = srv.tenants.key(who, session)
        if key not in srv.manager:
            raise _missing(session)
        if srv.runs.busy(key):
            raise HTTPException(409, f"session {session!r} is answering: delete it after `done`")
        srv.manager.delete(key)
        return {"deleted": session}

    @api.get("/metrics", response_class=PlainTextResponse)
    def metrics(srv: ServedDep, who: TenantDep) -> PlainTextResponse:
        """Prometheus text format (sessions, bytes, evictions, restores, runs, streams, RSS)."""
        return PlainTextResponse(render(srv.metrics), media_type=CONTENT_TYPE_LATEST)

    @api.get("/stats")
    def stats_view(srv: ServedDep, who: TenantDep) -> dict[str, Any]:
        """The manager's counters, the memory monitor's figures, run counts."""
        return stats(srv)
