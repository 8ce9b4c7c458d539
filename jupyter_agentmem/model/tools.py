"""Python functions of the notebook as OpenAI tools.

A tool is a plain typed function: its name comes from ``__name__``, its
description from the docstring and its JSON schema from the signature, so
``@agent_tool`` is all a notebook needs. Running a tool never raises into the
agent loop: bad arguments, exceptions and unserialisable results all become a
message the model can read and react to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jupyter_agentmem.errors import AgentMemError

from .schema import Signature, ValidationError, signature_of

MAX_TOOLS = 128
# What OpenAI accepts for a function name (others get a 400 at request time).
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}", re.ASCII)
MAX_ERROR_ITEMS = 8


class ToolError(AgentMemError):
    """A function cannot be used as a tool (the message says why)."""


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    first = doc.split("\n\n", 1)[0]
    return " ".join(first.split()) or f"Call the Python function {fn.__name__}."


@dataclasses.dataclass(frozen=True)
class Tool:
    """A registered function, the OpenAI tool spec derived from it, and its argument checks."""

    name: str
    function: Callable[..., Any]
    spec: dict[str, Any]
    signature: Signature | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], name: str | None = None) -> Tool:
        if not callable(fn):
            raise ToolError(f"{fn!r} is not callable, so it cannot be a tool")
        name = str(name or getattr(fn, "__name__", ""))
        if not _NAME.fullmatch(name):
            shown = name if len(name) <= 80 else name[:77] + "..."
            raise ToolError(
                f"tool name {shown!r} ({len(name)} chars) is not accepted by the API: use 1-64 "
                "ASCII letters, digits, '_' or '-', e.g. @agent_tool(name=\"lookup\")"
            )
        try:
            signature = signature_of(fn)
        except (TypeError, ValueError, NameError) as exc:
            raise ToolError(f"cannot read the signature of {name}: {exc}") from exc
        function = {"name": name, "description": _description(fn), "parameters": signature.schema}
        return cls(name, fn, {"type": "function", "function": function}, signature)


@dataclasses.dataclass(frozen=True)
class ToolOutcome:
    """What a tool call produced: the raw value (for display) or an error text."""

    value: Any
    error: str | None = None


class ToolRegistry:
    """Named tools, bounded (``MAX_TOOLS``), safe to use from several threads."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()

    def register(self, fn: Callable[..., Any], name: str | None = None) -> Tool:
        tool = Tool.from_function(fn, name)
        with self._lock:
            if tool.name not in self._tools and len(self._tools) >= MAX_TOOLS:
                raise ToolError(f"at most {MAX_TOOLS} tools can be registered")
            self._tools[tool.name] = tool
        return tool

    def unregister(self, name: str) -> bool:
        with self._lock:
            return self._tools.pop(name, None) is not None

    def get(self, name: str) -> Tool | None:
        with self._lock:
            return self._tools.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._tools)

    def select(
        self, names: Iterable[str] | None, namespace: Mapping[str, Any] | None = None
    ) -> list[Tool]:
        """Tools by name (all registered ones for ``None``); a name that is not
        registered but is a function in ``namespace`` (the notebook) is used as is."""
        if names is None:
            with self._lock:
                return list(self._tools.values())
        chosen = []
        for name in names:
            tool = self.get(name)
            if tool is None:
                candidate = (namespace or {}).get(name)
                if candidate is None or not callable(candidate):
                    known = ", ".join(self.names()) or "none registered"
                    raise ToolError(f"no tool or function named {name!r} (tools: {known})")
                tool = Tool.from_function(candidate, name)
            chosen.append(tool)
        return chosen


def _arguments(tool: Tool, arguments: str) -> dict[str, Any] | ToolOutcome:
    """The model's JSON arguments, checked against the signature, or the error to send back."""
    try:
        kwargs = json.loads(arguments or "{}")
    except ValueError as exc:
        return ToolOutcome(None, f"arguments are not valid JSON ({exc}); send a JSON object")
    if not isinstance(kwargs, dict):
        return ToolOutcome(None, "arguments must be a JSON object of named parameters")
    if tool.signature is None:
        return kwargs
    try:
        return tool.signature.validate(kwargs)
    except ValidationError as exc:
        return ToolOutcome(None, _invalid(tool.name, exc))


def _invalid(name: str, exc: ValidationError) -> str:
    """The validation errors in a few lines the model can act on."""
    errors = exc.errors(include_url=False, include_input=False)
    lines = [
        f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}"
        for e in errors[:MAX_ERROR_ITEMS]
    ]
    more = f"; and {len(errors) - MAX_ERROR_ITEMS} more" if len(errors) > MAX_ERROR_ITEMS else ""
    return f"invalid arguments for {name}: " + "; ".join(lines) + more + "; see the tool's schema"


def call_tool(tool: Tool, arguments: str) -> ToolOutcome:
    """Run a tool with the model's JSON arguments; failures become an error text."""
    kwargs = _arguments(tool, arguments)
    if isinstance(kwargs, ToolOutcome):
        return kwargs
    try:
        value = tool.function(**kwargs)
        if inspect.isawaitable(value):
            value = _run_awaitable(value)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return ToolOutcome(None, f"{type(exc).__name__}: {exc}")
    return ToolOutcome(value)


def _run_awaitable(value: Any) -> Any:
    """Await a coroutine tool from sync code (in a fresh loop if one is running here)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(value)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(value)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=runner, name="agentmem-async-tool", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def acall_tool(tool: Tool, arguments: str) -> ToolOutcome:
    """Async twin of :func:`call_tool`: coroutine tools are awaited, sync ones run in a thread."""
    kwargs = _arguments(tool, arguments)
    if isinstance(kwargs, ToolOutcome):
        return kwargs
    try:
        if inspect.iscoroutinefunction(tool.function):
            value = await tool.function(**kwargs)
        else:
            value = await asyncio.to_thread(tool.function, **kwargs)
            if inspect.isawaitable(value):
                value = await value
    except Exception as exc:
        return ToolOutcome(None, f"{type(exc).__name__}: {exc}")
    return ToolOutcome(value)


#: The process-wide registry used by ``@agent_tool`` and ``register_tool``.
default_registry = ToolRegistry()


def agent_tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Decorator: make a typed Python function available to ``%%agent`` as a tool.

    ``@agent_tool`` or ``@agent_tool(name="lookup")``; the function is returned
    unchanged, so it stays callable from the notebook.
    """

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        default_registry.register(function, name)
        return function

    return wrap(fn) if fn is not None else wrap


def register_tool(fn: Callable[..., Any], name: str | None = None) -> Tool:
    """Register ``fn`` as a tool (same as ``@agent_tool``) and return its spec."""
    return default_registry.register(fn, name)
