"""``POST /v1/chat/completions``: an OpenAI-compatible facade with memory on the server.

A client (the ``openai`` SDK with ``base_url`` pointed here) sends only its new
message; the session comes from the ``X-Session-Id`` header or the ``user``
field, and the server adds the summary and recent turns as in ``POST /chat``.
The last ``user`` message is the new turn; a ``system`` message, if any, is the
system prompt of this turn. Streaming answers are OpenAI chunks over SSE ending
with ``data: [DONE]``; errors are OpenAI-shaped (``{"error": {"message": ...}}``)
so the SDK raises its usual exceptions.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from .deps import Served, ServedDep, SessionId, TenantDep, start_run
from .runs import Run


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[dict[str, Any]] | None = None


class CompletionRequest(BaseModel):
    """The fields we use; others the SDK may send are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool = False
    user: SessionId | None = None
    stream_options: dict[str, Any] | None = None


def _text(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


async def completion_run(
    body: CompletionRequest,
    srv: ServedDep,
    who: TenantDep,
    session_header: Annotated[str | None, Header(alias="X-Session-Id", max_length=256)] = None,
    multitask: Annotated[str, Query(pattern="^(reject|enqueue)$")] = "reject",
) -> tuple[Run, CompletionRequest]:
    session = session_header or body.user
    if not session:
        raise HTTPException(
            422,
            "no session: send an X-Session-Id header or the `user` field (memory is per session)",
        )
    users = [m for m in body.messages if m.role == "user"]
    if not users or not _text(users[-1]):
        raise HTTPException(422, "body.messages: the last user message is empty or missing")
    options: dict[str, Any] = {"model": body.model}
    systems = [m for m in body.messages if m.role == "system"]
    if systems:
        options["system"] = _text(systems[-1])
    run = start_run(srv, who, session, _text(users[-1]), options, multitask == "enqueue")
    return run, body


def _chunk(run: Run, model: str, delta: dict[str, Any], finish: str | None) -> str:
    return json.dumps(
        {
            "id": f"chatcmpl-{run.run_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


async def _stream(srv: Served, run: Run, body: CompletionRequest) -> AsyncIterator[bytes]:
    """OpenAI chunks as SSE ``data:`` lines (FastAPI's own SSE encoder), then ``[DONE]``."""
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    srv.runs.streams_open += 1
    try:
        yield format_sse_event(data_str=_chunk(run, body.model, {"role": "assistant"}, None))
        async for item in run.subscribe(0):
            data = json.loads(item.data())
            if item.event == "delta":
                chunk = _chunk(run, body.model, {"content": data["text"]}, None)
                yield format_sse_event(data_str=chunk)
            elif item.event == "error":
                error = {"error": {"message": data["message"], "type": "model_error"}}
                yield format_sse_event(data_str=json.dumps(error))
            elif item.event == "done":
                yield format_sse_event(data_str=_chunk(run, body.model, {}, "stop"))
                if include_usage and data["usage"]:
                    usage = json.loads(_chunk(run, body.model, {}, None))
                    usage["choices"], usage["usage"] = [], data["usage"]
                    yield format_sse_event(data_str=json.dumps(usage))
        yield format_sse_event(data_str="[DONE]")
    finally:
        srv.runs.streams_open -= 1


async def _complete(srv: Served, run: Run, body: CompletionRequest) -> JSONResponse:
    done: dict[str, Any] | None = None
    async for item in run.subscribe(0):
        if item.event in ("done", "error"):
            done = {"event": item.event, **json.loads(item.data())}
    if done is None or done["event"] == "error":
        message = "the run ended without an answer" if done is None else done["message"]
        return JSONResponse({"error": {"message": message, "type": "model_error"}}, 502)
    return JSONResponse(
        {
            "id": f"chatcmpl-{run.run_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": done["text"]},
                    "finish_reason": "stop",
                }
            ],
            "usage": done["usage"],
        }
    )


def add_openai_routes(api: APIRouter) -> None:
    @api.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        srv: ServedDep, started: Annotated[tuple[Run, CompletionRequest], Depends(completion_run)]
    ) -> Any:
        """OpenAI chat completions, streaming or not, with the session's memory.

        Streaming or not is chosen by the body, so this returns FastAPI's
        ``EventSourceResponse`` itself instead of being a generator route."""
        run, body = started
        if not body.stream:
            return await _complete(srv, run, body)
        return EventSourceResponse(_stream(srv, run, body), headers={"Cache-Control": "no-cache"})

    @api.get("/v1/models")
    async def models(srv: ServedDep, who: TenantDep) -> dict[str, Any]:
        """The configured model, for SDKs that list models first."""
        model = srv.agent.endpoint().model
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "owned_by": "agentmem"}],
        }
