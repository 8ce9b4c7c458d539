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
    from .errors import (
        AgentMemError,
        InvalidMessageError,
        SessionConflictError,
        StoreCorruptError,
        StoreError,
        SummarizerError,
    )
    from .monitor import MemoryMonitor
    from .sessions import SessionManager
    from .state import ConversationState, StatePolicy
    from .summarize import ExtractiveSummarizer, LLMSummarizer, Summarizer
    from .truncate import ToolOutputTruncator

_EXPORTS = {
    "ConversationState": "state",
    "StatePolicy": "state",
    "SessionManager": "sessions",
    "ToolOutputTruncator": "truncate",
    "MemoryMonitor": "monitor",
    "Summarizer": "summarize",
    "ExtractiveSummarizer": "summarize",
    "LLMSummarizer": "summarize",
    "AgentMemError": "errors",
    "InvalidMessageError": "errors",
    "StoreError": "errors",
    "StoreCorruptError": "errors",
    "SessionConflictError": "errors",
    "SummarizerError": "errors",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jupyter_agentmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
