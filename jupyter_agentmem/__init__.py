"""jupyter-agentmem: LLM agents in Jupyter without running the kernel out of memory.

``%load_ext jupyter_agentmem`` registers the ``%%agent`` and ``%agent_memory``
magics. The memory engine is usable on its own::

    from jupyter_agentmem import ConversationState, SessionManager, ToolOutputTruncator

Imports are lazy so that ``import jupyter_agentmem`` stays cheap (no openai,
ipywidgets or psutil until they are needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jupyter_agentmem.agent.chat import Agent, ModelError
    from jupyter_agentmem.errors import (
        AgentMemError,
        InvalidMessageError,
        SessionConflictError,
        StoreCorruptError,
        StoreError,
        SummarizerError,
    )
    from jupyter_agentmem.memory.manager import SessionManager
    from jupyter_agentmem.memory.state import ConversationState, StatePolicy
    from jupyter_agentmem.memory.summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
    from jupyter_agentmem.memory.truncate import ToolOutputTruncator
    from jupyter_agentmem.watch.monitor import MemoryMonitor

_EXPORTS = {
    "ConversationState": "memory.state",
    "StatePolicy": "memory.state",
    "SessionManager": "memory.manager",
    "ToolOutputTruncator": "memory.truncate",
    "MemoryMonitor": "watch.monitor",
    "Summarizer": "memory.summarize",
    "ExtractiveSummarizer": "memory.summarize",
    "LLMSummarizer": "memory.summarize",
    "AgentMemError": "errors",
    "InvalidMessageError": "errors",
    "StoreError": "errors",
    "StoreCorruptError": "errors",
    "SessionConflictError": "errors",
    "SummarizerError": "errors",
    "Agent": "agent.chat",
    "ModelError": "agent.chat",
}

__all__ = [
    *_EXPORTS,
    "__version__",
    "agent_tool",
    "get_manager",
    "load_ipython_extension",
    "register_tool",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_agentmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_agentmem``: one SessionManager for the kernel, and the magics."""
    from jupyter_agentmem.notebook.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_agentmem``: stop threads, remove hooks, flush sessions."""
    from jupyter_agentmem.notebook.extension import unload

    unload()


def get_manager() -> Any:
    """The kernel's :class:`SessionManager` (after ``%load_ext jupyter_agentmem``)."""
    from jupyter_agentmem.notebook.extension import get_manager as _get_manager

    return _get_manager()


def agent_tool(fn: Any = None, *, name: str | None = None) -> Any:
    """Decorator: make a typed notebook function a tool for ``%%agent``."""
    from jupyter_agentmem.model.tools import agent_tool as _agent_tool

    return _agent_tool(fn, name=name)


def register_tool(fn: Any, name: str | None = None) -> Any:
    """Register ``fn`` as a tool for ``%%agent`` (like ``@agent_tool``)."""
    from jupyter_agentmem.model.tools import register_tool as _register_tool

    return _register_tool(fn, name)
