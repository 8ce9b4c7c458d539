"""The HTTP face: ``create_app`` builds a FastAPI app around an :class:`Agent`.

Everything an app needs lives on ``app.state.agentmem`` (a :class:`Served`), so a
process may build as many apps as it likes (tests do). Request bodies are
pydantic models (a bad one is a 422 naming the field), the tenant comes from a
dependency, SSE is FastAPI's own ``EventSourceResponse``, and the body limit is
FastAPI's ``max_body_size`` (413 before the body is read whole; a declared
``Content-Length`` over it is refused before anything is read). Every error is
``{"error": "one line saying what to do"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.watch.monitor import MemoryMonitor

from .auth import LocalIds, Tenants
from .deps import Served
from .fleet import Fleet
from .metrics import make_registry
from .openai_compat import add_openai_routes
from .routes import add_chat_routes
from .runs import RunRegistry
from .sessions import add_session_routes

log = logging.getLogger(__name__)

MiB = 1024 * 1024


def default_agent(config: AgentMem | None = None, store_url: str | None = None) -> Agent:
    """The agent a kernel would build from settings and environment (demo model with no key)."""
    config = config or AgentMem()
    return Agent(config.session_manager(store_url), config)


def create_app(
    agent: Agent | None = None,
    *,
    tokens: Mapping[str, str] | None = None,
    monitor: MemoryMonitor | None = None,
    max_body_bytes: int = MiB,
    event_ttl: float = 120.0,
    max_run_bytes: int = 256 * 1024,
    max_runs: int = 10_000,
    title: str = "jupyter-agentmem",
    close_agent: bool | None = None,
    local_ids: LocalIds | None = None,
    fleet: Fleet | None = None,
) -> FastAPI:
    """A FastAPI app serving ``agent`` (default: :func:`default_agent`, closed with the app).

    ``tokens`` maps bearer tokens to tenant names; without it the app is single-user
    and must only listen on loopback. Events of a run are kept ``event_ttl`` seconds
    after it ends, at most ``max_run_bytes`` per run. ``close_agent`` (default: only
    when the app built the agent) closes the agent and its manager at shutdown.
    ``local_ids`` maps session names to manager ids when there are no tokens (the
    kernel's own naming, so ``%%agent -s NAME`` and HTTP share a conversation).
    ``fleet`` (:class:`~jupyter_agentmem.serve.fleet.Fleet`) shares run leases and
    run events with the other instances on the same Redis; the app closes it.
    """
    owns = agent is None if close_agent is None else close_agent
    agent = agent if agent is not None else default_agent()
    served = Served(
        agent=agent,
        tenants=Tenants(tokens, local_ids),
        runs=RunRegistry(
            agent, ttl=event_ttl, max_run_bytes=max_run_bytes, max_runs=max_runs, fleet=fleet
        ),
        monitor=monitor or MemoryMonitor(session_count=agent.manager.__len__),
        max_body_bytes=max_body_bytes,
        owns_agent=owns,
    )

    app = FastAPI(
        title=title,
        lifespan=_lifespan(served, fleet),
        docs_url=None,
        redoc_url=None,
    )
    served.metrics = make_registry(served)
    app.state.agentmem = served
    app.add_middleware(DeclaredSizeLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    api = APIRouter(max_body_size=max_body_bytes)
    add_chat_routes(api)
    add_session_routes(api)
    add_openai_routes(api)
    app.include_router(api)
    return app


def _lifespan(
    served: Served, fleet: Fleet | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start: remember the event loop. Stop: end the runs, the fleet, and what the app owns."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            await served.runs.aclose()
            if fleet is not None:
                await fleet.aclose()
            if served.owns_agent:
                served.agent.close()
                served.manager.close()

    return lifespan


class DeclaredSizeLimit:
    """413 as JSON at once when ``Content-Length`` is over the limit (the body is never
    read). Bodies without a length are counted as they arrive by FastAPI's own
    ``max_body_size``; this only gives the declared case our error format."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                message = f"request body over {self.max_bytes} bytes: send a shorter message"
                response = JSONResponse({"error": message}, 413, headers={"Connection": "close"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = str(exc.detail)
    if exc.status_code == 413:
        limit = request.app.state.agentmem.max_body_bytes
        message = f"request body over {limit} bytes: send a shorter message"
    return error_response(request, exc.status_code, message, exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(request, 422, "; ".join(problems) or "invalid request")


def error_response(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``{"error": message}``; under ``/v1/`` OpenAI's shape, so its SDKs show the message."""
    if request.url.path.startswith("/v1/"):
        body: dict[str, Any] = {"error": {"message": message, "type": "invalid_request_error"}}
    else:
        body = {"error": message}
    return JSONResponse(body, status, headers=dict(headers) if headers else None)


__all__ = ["MiB", "create_app", "default_agent"]
