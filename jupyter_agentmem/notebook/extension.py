"""The kernel-scoped life cycle: what ``%load_ext`` creates and ``%unload_ext`` undoes.

:func:`load` creates the kernel's :class:`~.context.KernelContext` and registers
the magics; :func:`unload` runs the context's closers (threads, hooks, stores).
This is the only module that imports the magics, and nothing imports it back.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.errors import NotLoadedError

from .context import KernelContext

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_agentmem.memory.manager import SessionManager

__all__ = ["KernelContext", "NotLoadedError", "get_context", "get_manager", "load", "unload"]

_CONTEXT: KernelContext | None = None
_CONTEXT_LOCK = threading.Lock()


def get_context() -> KernelContext:
    """The loaded extension's context (raises :class:`NotLoadedError` otherwise)."""
    if _CONTEXT is None:
        raise NotLoadedError()
    return _CONTEXT


def get_manager() -> SessionManager:
    """The kernel's SessionManager, for use from Python code in the notebook."""
    return get_context().manager


def _at_exit() -> None:
    unload()


def load(shell: InteractiveShell | None, config: AgentMem | None = None) -> KernelContext:
    """Create the kernel context (idempotent: a second load returns the first one)."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is not None:
            return _CONTEXT
        if config is None:
            config = AgentMem(config=shell.config if shell is not None else None)
        context = KernelContext(shell, config)
        _CONTEXT = context
    from .live_settings import bind_settings

    bind_settings(context)  # %config AgentMem... and %agent_memory config apply live
    if shell is not None:
        register_magics(shell, context)
        if config.memory_guard:
            from jupyter_agentmem.watch.guard import install_guard

            install_guard(context)
    atexit.register(_at_exit)
    return context


def register_magics(shell: InteractiveShell, context: KernelContext) -> None:
    """Register ``%agent``/``%%agent``, ``%agent_memory`` and ``%agent_serve`` on ``shell``."""
    from . import magics, memory_magics, serve_magic  # serve_magic imports fastapi only when run

    magics.register(shell, context)
    memory_magics.register(shell, context)
    serve_magic.register(shell, context)


def unload() -> None:
    """Undo :func:`load`: stop threads, remove callbacks, flush sessions, close stores."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        context, _CONTEXT = _CONTEXT, None
    atexit.unregister(_at_exit)
    if context is not None:
        context.remember_settings()
        context.close()
