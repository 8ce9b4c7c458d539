"""``{name}`` interpolation of notebook variables into a prompt, done once and safely.

Only fields that look like Python references (``{df}``, ``{cfg.path}``,
``{rows[0]}``, optionally with ``!r`` or ``:spec``) are interpolated; anything
else in braces (JSON, ``{}``, set literals, code) is left exactly as written, so
pasting JSON into a prompt never crashes. ``{{`` and ``}}`` are literal braces.
Values are inserted in a single pass, so braces inside a value are never
expanded again. Large values are summarised for the model (a DataFrame's
shape, columns and head rather than a million-row repr).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jupyter_agentmem.errors import AgentMemError

_FIELD = re.compile(
    r"\{\{|\}\}|\{(?P<ref>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\[\]{}]+\])*)"
    r"(?P<conv>![rsa])?(?P<spec>:[^{}]*)?\}"
)
_PART = re.compile(r"\.([A-Za-z_]\w*)|\[([^\[\]]+)\]")
MAX_VALUE_CHARS = 4000


class PromptError(AgentMemError):
    """A ``{name}`` in the prompt cannot be resolved (the message names it)."""


def _resolve(ref: str, namespace: Mapping[str, Any]) -> Any:
    head = re.match(r"[A-Za-z_]\w*", ref)
    assert head is not None
    name = head.group(0)
    if name not in namespace:
        raise PromptError(
            f"{{{name}}} in the prompt is not a variable of the notebook; "
            f"define it, or write {{{{{name}}}}} for literal braces"
        )
    value = namespace[name]
    for attr, key in _PART.findall(ref[len(name) :]):
        try:
            if attr:
                value = getattr(value, attr)
            else:
                index: Any = int(key) if key.lstrip("-").isdigit() else key.strip("'\"")
                value = value[index]
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise PromptError(f"cannot evaluate {{{ref}}}: {type(exc).__name__}: {exc}") from exc
    return value


def describe_value(value: Any, max_chars: int = MAX_VALUE_CHARS) -> str:
    """Text of a value for the model, bounded: tables are summarised, others cut."""
    if isinstance(value, str):
        text = value
    elif all(hasattr(value, attr) for attr in ("shape", "columns", "head")):
        try:
            text = (
                f"<table of shape {tuple(value.shape)}; columns: {list(value.columns)}>\n"
                f"first rows:\n{value.head(5).to_string()}"
            )
        except Exception:
            text = repr(value)
    else:
        text = repr(value)
    if len(text) > max_chars:
        cut = len(text) - max_chars
        text = (
            text[: max_chars * 2 // 3] + f"\n...[{cut:,} chars cut]...\n" + text[-max_chars // 3 :]
        )
    return text


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{ref}`` fields with values from ``namespace`` (one pass, bounded values)."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = _resolve(match.group("ref"), namespace)
        conv, spec = match.group("conv"), match.group("spec")
        if conv == "!r":
            value = repr(value)
        elif conv == "!a":
            value = ascii(value)
        if spec:
            try:
                return format(value, spec[1:])
            except (TypeError, ValueError) as exc:
                raise PromptError(f"cannot format {token}: {exc}") from exc
        return describe_value(value)

    return _FIELD.sub(replace, text)
