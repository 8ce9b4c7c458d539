"""What every endpoint shares: the app's objects, the caller's tenant, a session id type."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pydantic import Field, StrictStr

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.watch.monitor import MemoryMonitor

from .auth import Tenants
from .runs import Run, RunRegistry, SessionBusyError


@dataclass
class Served:
    """What the routes of one app share."""

    agent: Agent
    tenants: Tenants
    runs: RunRegistry
    monitor: MemoryMonitor
    max_body_bytes: int
    owns_agent: bool
    metrics: Any = None
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def manager(self) -> SessionManager:
        return self.agent.manager

    def cancel_runs(self, timeout: float = 10.0) -> None:
        """From another thread: cancel every run (partial answers stored), so open streams
        end with their ``done`` event and a graceful stop does not wait for them."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.runs.aclose(), loop)
        try:
            future.result(timeout)
        except Exception:  # the loop may be stopping already; shutdown cancels the rest
            future.cancel()


# Dependencies are ``async def`` although they do not await: FastAPI runs a plain ``def``
# dependency in its thread pool (40 threads), two hops per request under load.


async def served(request: Request) -> Served:
    """Dependency: the app's shared objects."""
    value: Served = request.app.state.agentmem
    return value


async def tenant(request: Request) -> str:
    """Dependency: the caller's tenant (401 without a known token)."""
    value: Served = request.app.state.agentmem
    return value.tenants.dependency(request)


SessionId = Annotated[
    StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")
]
ServedDep = Annotated[Served, Depends(served)]
TenantDep = Annotated[str, Depends(tenant)]


def start_run(
    srv: Served, who: str, session: str, message: str, options: dict[str, Any], enqueue: bool
) -> Run:
    """Start a run or answer 409 (the session is busy and the client did not ask to wait)."""
    try:
        return srv.runs.start(
            who, session, srv.tenants.key(who, session), message, options, enqueue=enqueue
        )
    except SessionBusyError as exc:
        raise HTTPException(409, str(exc)) from exc
