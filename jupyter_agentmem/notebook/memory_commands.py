"""What ``%agent_memory``'s sub-commands do, as plain functions of the kernel context.

No IPython here: each function is usable from Python and testable without a
shell. Settings go through the context's traitlets object (the same path as
IPython's ``%config AgentMem...``), so they are validated once, all or nothing,
and applied live by :mod:`~jupyter_agentmem.notebook.live_settings`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from traitlets import TraitError
from traitlets.config import Config

from jupyter_agentmem.errors import mask_credentials

from .live_settings import SettingError, bind_settings

if TYPE_CHECKING:
    from .context import KernelContext

MemoryCommandError = SettingError  # the name sub-commands have always raised
Row = tuple[object, ...]
_SECRET = re.compile(r"(secret|token|password|api_key)$", re.IGNORECASE)  # never shown


def stats(context: KernelContext) -> dict[str, Any]:
    """Memory (vs the real limit), manager counters and guard/watch state, as one dict."""
    from jupyter_agentmem.watch.guard import describe_guard
    from jupyter_agentmem.watch.ticker import get_watcher

    from . import namespace as ns

    return {
        "memory": context.monitor.check(),
        "namespace": ns.current(context.shell),
        "sessions": context.manager.stats().as_dict(),
        "guard": describe_guard(context),
        "watch": get_watcher(context) is not None,
    }


def sessions(
    context: KernelContext, limit: int = 20, everywhere: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` sessions (in memory, most recent first, then stored) and the total:
    this notebook's and the shared ones, or with ``everywhere`` every namespace's.

    A stored session's row says what the store knows (size, last active, turns): only
    the ``limit`` shown are read, each without being restored."""
    from . import namespace as ns

    here = ns.current(context.shell)
    everything = [
        row | {"namespace": owner or "shared", "name": name}
        for row in context.manager.list_sessions()
        for owner, name in [ns.split(str(row["session_id"]))]
        if everywhere or owner in (None, here)
    ]
    page = everything[:limit]
    for row in page:
        if not row["in_memory"]:
            row.update(_stored_row(context, row["session_id"]))
    return page, len(everything)


def _stored_row(context: KernelContext, session_id: str) -> dict[str, Any]:
    try:
        doc = context.manager.store.load(session_id)
    except Exception:  # a row of the listing must not fail the whole listing
        return {}
    if doc is None:
        return {}
    messages = doc.get("messages") or []
    users = doc.get("turns")
    if users is None:
        from jupyter_agentmem.memory.document import count_user_turns

        users = count_user_turns(messages)
    return {
        "messages": len(messages),
        "stored_bytes": len(json.dumps(doc, ensure_ascii=False).encode("utf-8", "replace")),
        "last_access": doc.get("last_access"),
        "turns": users,
    }


def session_document(context: KernelContext, session_id: str) -> dict[str, Any]:
    """Summary and recent messages of a session; a stored one is read without restoring it."""
    manager = context.manager
    state = manager.get(session_id) if session_id in manager.live_ids() else None
    if state is not None:
        return state.to_dict() | {"in_memory": True}
    doc = manager.store.load(session_id)
    if doc is None:
        raise MemoryCommandError(f"no session {session_id!r}: `%agent_memory sessions` lists them")
    return dict(doc) | {"in_memory": False}


def compact(context: KernelContext, session_id: str | None = None) -> int:
    """Compact one session now (or, with ``None``, every session that needs it)."""
    manager = context.manager
    if session_id is None:
        return manager.compact_all()
    state = manager.get(session_id)
    if state is None:
        raise MemoryCommandError(f"no session {session_id!r}: `%agent_memory sessions` lists them")
    from jupyter_agentmem.memory.summarize import ExtractiveSummarizer

    return int(state.compact(manager.policy.summarizer or ExtractiveSummarizer()))


def set_values(context: KernelContext, values: dict[str, Any]) -> dict[str, Any]:
    """Set traits on the kernel's settings the way ``%config`` does (one validation, all or
    nothing); a new ``store_url`` goes first, as moving the sessions is what can fail."""
    live = bind_settings(context)
    config, rest = context.config, dict(values)
    done: dict[str, Any] = {}
    if "store_url" in rest and rest["store_url"] != config.store_url:
        _update(context, {"store_url": rest.pop("store_url")})
        done = {"store_url": config.store_url, "sessions_moved": live.sessions_moved}
    _update(context, rest)
    return {**rest, **done}


def _update(context: KernelContext, values: dict[str, Any]) -> None:
    try:
        context.config.update_config(Config({"AgentMem": values}))
    except (TraitError, ValueError) as exc:
        raise MemoryCommandError(mask_credentials(str(exc))) from None


def set_config(context: KernelContext, assignments: list[str]) -> dict[str, Any]:
    """``["key=value", ...]``, read by each trait's own ``from_string``, then :func:`set_values`."""
    traits = context.config.traits(config=True)
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or key not in traits:
            problem = f"unknown setting {key!r}" if sep else f"expected key=value, got {item!r}"
            raise MemoryCommandError(f"{problem}; valid keys: {', '.join(sorted(traits))}")
        try:
            values[key] = traits[key].from_string(text)
        except Exception as exc:
            raise MemoryCommandError(mask_credentials(f"config {key}={text!r}: {exc}")) from None
    return set_values(context, values)


def config_rows(context: KernelContext) -> list[Row]:
    """Every setting, its value (secrets hidden, credentials in URLs masked) and its help."""
    config = context.config
    return [
        (key, "***" if _SECRET.search(key) else mask_credentials(repr(getattr(config, key))), doc)
        for key, doc in config.settable().items()
    ]


def apply_limits(
    context: KernelContext,
    max_sessions: int | None = None,
    max_memory: str | None = None,
    max_recent: int | None = None,
    mem_limit: str | None = None,
) -> dict[str, Any]:
    """Budgets and the memory limit, set as settings (all or nothing); returns them all."""
    from jupyter_agentmem.watch.monitor import parse_size

    values: dict[str, Any] = {"max_sessions": max_sessions, "max_recent": max_recent}
    try:
        values["max_memory_bytes"] = None if max_memory is None else parse_size(max_memory)
        values["mem_limit"] = None if mem_limit is None else parse_size(mem_limit)
    except ValueError as exc:
        raise MemoryCommandError(str(exc)) from None
    set_values(context, {k: v for k, v in values.items() if v is not None})
    manager, real = context.manager, context.monitor.check()
    return {
        "max_sessions": manager.max_sessions,
        "max_memory_bytes": manager.max_memory_bytes,
        "max_recent": manager.policy.max_recent,
        "memory_limit_bytes": real["limit_bytes"],
        "memory_limit_source": f"{real['limit_source']} ({real['limit_detail']})",
    }
