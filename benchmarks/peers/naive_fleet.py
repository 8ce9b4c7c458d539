"""The article's ``/chat`` (``naive_serve``) unchanged, plus two read-only routes the
fleet benchmark needs: ``/healthz`` and how many messages this process holds per session."""

from __future__ import annotations

from .naive_serve import app, sessions


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/sessions/{session_id}")
async def held(session_id: str) -> dict[str, int]:
    return {"messages": len(sessions.get(session_id, []))}
