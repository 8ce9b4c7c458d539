"""Conversations belong to their notebook: session names are namespaced by notebook path.

Why: every kernel of a user shares one store, so a bare ``default`` would let a new
notebook silently continue another notebook's conversation.

Store ids:

- ``%%agent -s name`` in notebook ``P`` is ``notebook:P::name``. ``P`` is
  ipykernel's ``__session__`` (from ``JPY_SESSION_NAME``, which Jupyter sets to the
  notebook's path), so a reopened notebook continues and another notebook does not
  see it. A kernel without a notebook path (a terminal IPython, nbval) gets a
  namespace of its own, ``kernel:<start time>-<pid>``: nothing survives it.
- A name with a colon (``-s team:churn``) or ``--shared`` is *shared*: the id is the
  name itself, the same in every notebook. Python code that passes ids to
  ``get_manager()`` or ``Agent.chat`` uses these plain ids, as before.
- Renaming or moving a notebook changes its path, hence its namespace: the old
  conversations stay in the store under the old path. ``%agent_memory sessions
  --adopt OLD_PATH`` (or :func:`adopt`) moves them to the current notebook.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from jupyter_agentmem.errors import AgentMemError

if TYPE_CHECKING:
    from jupyter_agentmem.memory.manager import SessionManager

    from .context import KernelContext

SEP = "::"
_KERNEL = f"kernel:{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
_NOTICED_MAX = 10_000


class NamespaceError(AgentMemError, ValueError):
    """A session name or notebook path that cannot be used; the message says why."""


def current(shell: Any) -> str:
    """This kernel's namespace: its notebook, else the kernel itself."""
    user_ns = getattr(shell, "user_ns", None) or {}
    path = user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME")
    if isinstance(path, str) and path.strip():
        return f"notebook:{path}"
    return _KERNEL


def qualify(name: str, namespace: str, shared: bool = False) -> str:
    """The store id of ``name`` in ``namespace`` (shared names are their own id)."""
    if not name:
        raise NamespaceError("the session name is empty: use -s NAME")
    if shared or ":" in name:
        return name
    return f"{namespace}{SEP}{name}"


def split(session_id: str) -> tuple[str | None, str]:
    """``(namespace, name)`` of a store id; ``(None, id)`` for a shared one."""
    namespace, sep, name = session_id.rpartition(SEP)
    if sep and ":" not in name and namespace.startswith(("notebook:", "kernel:")):
        return namespace, name
    return None, session_id


def label(session_id: str, namespace: str | None = None) -> str:
    """How a session is shown: its short name when local, its full id otherwise."""
    owner, name = split(session_id)
    if owner is not None and (namespace is None or owner == namespace):
        return name
    return session_id


def resolve(context: KernelContext, name: str) -> str:
    """A name typed in ``%agent_memory``: this notebook's session if it has one, else the
    name as a shared id."""
    local = qualify(name, current(context.shell))
    if local != name and local in context.manager:
        return local
    return name


def session_id(name: str = "default", shared: bool = False) -> str:
    """The store id ``%%agent -s name`` uses in this notebook, for Python code."""
    from IPython import get_ipython

    return qualify(name, current(get_ipython()), shared)


def continuing_notice(context: KernelContext, sid: str) -> str | None:
    """Once per session and kernel: say that a cell continues a conversation restored
    from the store, so nobody is surprised by old context."""
    seen: OrderedDict[str, None] = context.resource("noticed sessions", OrderedDict, _clear)
    if sid in seen:
        return None
    seen[sid] = None
    if len(seen) > _NOTICED_MAX:
        seen.popitem(last=False)
    manager = context.manager
    if sid in manager.live_ids():
        return None
    state = manager.get(sid)
    if state is None or state.total_turns == 0:
        return None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.last_access))
    return (
        f"continuing session {label(sid)!r}: {state.total_turns} earlier messages, "
        f"last active {when}"
    )


def _clear(seen: OrderedDict[str, None]) -> None:
    seen.clear()


def adopt(manager: SessionManager, old: str, new: str) -> list[str]:
    """Move every session of namespace ``old`` to ``new`` (after a rename or move).

    Refuses, changing nothing, if ``new`` already has a session of the same name.
    Returns the moved names.
    """
    moving = [
        (sid, name) for sid in _all_ids(manager) for owner, name in [split(sid)] if owner == old
    ]
    clashes = [name for _, name in moving if f"{new}{SEP}{name}" in manager]
    if clashes:
        raise NamespaceError(
            f"this notebook already has session(s) {clashes}: delete them first "
            "(%agent_memory delete NAME) or rename them"
        )
    for sid, name in moving:
        state = manager.get(sid)
        if state is None:
            continue
        doc = state.to_dict()
        target = f"{new}{SEP}{name}"
        doc.update(session_id=target)
        doc.pop("revision", None)
        doc.pop("log_marks", None)  # the marks belong to the old id's turn log
        manager.store.save(target, doc)
        manager.delete(sid)
    return [name for _, name in moving]


def notebook_namespace(path: str) -> str:
    """The namespace of a notebook path (as ``%agent_memory sessions --adopt`` takes it)."""
    path = path.strip()
    if not path:
        raise NamespaceError("give the notebook's old path, e.g. --adopt work/old-name.ipynb")
    return path if path.startswith(("notebook:", "kernel:")) else f"notebook:{path}"


def _all_ids(manager: SessionManager) -> list[str]:
    return [str(row["session_id"]) for row in manager.list_sessions()]
