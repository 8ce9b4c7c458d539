"""Serve the notebook's agent over HTTP (extra ``jupyter-agentmem[serve]``).

``create_app(agent)`` returns a FastAPI app: ``POST /chat`` streams an answer as
server-sent events, runs are resumable with ``Last-Event-ID``, sessions are
per tenant. ``jupyter-agentmem serve`` runs it with uvicorn.
"""

from __future__ import annotations

from .app import create_app, default_agent

__all__ = ["create_app", "default_agent"]
