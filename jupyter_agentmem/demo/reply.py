"""The built-in offline demo model: a pure function from a request body to a reply.

Why a pure function: the loopback server (:mod:`.server`) streams whatever this
returns over real HTTP, so notebooks (and tests) exercise the real SDK path, while
the *behaviour* of the demo model stays unit-testable without any socket.

The demo model is honest about being a demo: every text answer says so and tells
the user how to switch to a real model. It is still useful for a tutorial: it
echoes a digest of the prompt, reports how much context it received (so memory
compaction can be watched), calls a tool when the prompt names one (so tool
calls and truncation can be explored offline) and summarises tool results.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_agentmem.vocabulary import SUMMARY_PREFIX

__all__ = [
    "SUMMARY_PREFIX",
    "SWITCH_HINT",
    "DemoReply",
    "DemoToolCall",
    "content_text",
    "demo_reply",
    "estimate_tokens",
    "prompt_chars",
]

#: The one-line switch to a real model, repeated in every demo answer.
SWITCH_HINT = (
    "I am jupyter-agentmem's offline demo model: set OPENAI_API_KEY, or "
    "`%agent_memory config base_url=... model=...`, for a real one."
)

_DIGEST_CHARS = 60
_RESULT_PREVIEW_CHARS = 80
_INT_RE = re.compile(r"(?<![\w.])-?\d+(?![\w.])")
_NUM_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_QUOTED_RE = re.compile(r"\"([^\"]*)\"|'([^']*)'|`([^`]*)`")


@dataclass(frozen=True, slots=True)
class DemoToolCall:
    """One tool call the demo model wants made (the server assigns the call id)."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DemoReply:
    """What the demo model answers: either text or (parallel) tool calls, plus usage."""

    text: str | None = None
    tool_calls: tuple[DemoToolCall, ...] = field(default_factory=tuple)
    prompt_tokens: int = 0
    completion_tokens: int = 0


def estimate_tokens(chars: int) -> int:
    """Rough token count (about four characters per token), as used for ``usage``."""
    return math.ceil(chars / 4) if chars > 0 else 0


def content_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message, whether ``content`` is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _message_chars(message: Mapping[str, Any]) -> int:
    """Characters a message contributes to the context (content plus tool-call arguments)."""
    chars = len(content_text(message))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            fn = call.get("function") or {}
            chars += len(str(fn.get("name", ""))) + len(str(fn.get("arguments", "")))
    return chars


def prompt_chars(request_body: Mapping[str, Any]) -> int:
    """Characters of context in a request (all messages), the base of ``prompt_tokens``."""
    raw = request_body.get("messages")
    return sum(_message_chars(m) for m in raw or () if isinstance(m, Mapping))


def _digest(text: str, limit: int) -> str:
    """Whitespace-collapsed prefix of ``text``, with an ellipsis when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _tool_schemas(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Map function name -> JSON schema of its parameters, from the request's ``tools``."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for tool in body.get("tools") or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function")
        if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            schemas[fn["name"]] = params if isinstance(params, Mapping) else {}
    return schemas


def _named_tools(text: str, names: Sequence[str]) -> list[str]:
    """Tool names mentioned as whole words in ``text``, in order of first mention."""
    found: list[tuple[int, str]] = []
    for name in names:
        match = re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


class _ArgFiller:
    """Fill a tool's required arguments from the prompt, deterministically.

    Numbers and quoted strings are consumed in order, so ``add 2 and 3`` gives
    ``a=2, b=3``; ``city Paris`` or ``city="Paris"`` binds the word after the name.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.ints = [int(m.group()) for m in _INT_RE.finditer(text)]
        self.nums = [float(m.group()) for m in _NUM_RE.finditer(text)]
        self.quoted = [
            next(g for g in m.groups() if g is not None) for m in _QUOTED_RE.finditer(text)
        ]

    def _after_name(self, name: str) -> str | None:
        value = r"(\"[^\"]*\"|'[^']*'|[\w.+-]+)"
        pattern = rf"(?<![\w]){re.escape(name)}(?![\w])\s*(?:=|:|is\b)?\s*{value}"
        match = re.search(pattern, self.text, flags=re.IGNORECASE)
        return match.group(1).strip("\"'").rstrip(".,;:") if match else None

    def value(self, name: str, schema: Mapping[str, Any]) -> Any:
        kind = schema.get("type")
        explicit = self._after_name(name)
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            options = schema["enum"]
            return next((o for o in options if str(o) in self.text), options[0])
        if kind == "integer":
            if explicit is not None and _INT_RE.fullmatch(explicit):
                return int(explicit)
            return self.ints.pop(0) if self.ints else 0
        if kind == "number":
            if explicit is not None and _NUM_RE.fullmatch(explicit):
                return float(explicit)
            return self.nums.pop(0) if self.nums else 0
        if kind == "boolean":
            return explicit is not None and explicit.lower() in {"true", "yes", "1", "on"}
        if kind == "array":
            return []
        if kind == "object":
            return {}
        if explicit is not None:
            return explicit
        return self.quoted.pop(0) if self.quoted else ""

    def arguments(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        args: dict[str, Any] = {}
        for name in required:
            prop = props.get(name) if isinstance(props, Mapping) else None
            prop = prop if isinstance(prop, Mapping) else {}
            args[name] = prop["default"] if "default" in prop else self.value(name, prop)
        return args


def _tool_name_for(messages: Sequence[Mapping[str, Any]], call_id: object) -> str:
    """Find which function a ``tool`` message answers, via the assistant's tool_calls."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping) and call.get("id") == call_id:
                return str((call.get("function") or {}).get("name", "tool"))
    return "tool"


def _tool_results_answer(messages: Sequence[Mapping[str, Any]]) -> str:
    """Summarise the trailing run of ``tool`` messages: name, size, first characters."""
    results: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    results.reverse()
    lines = []
    for result in results:
        name = result.get("name") or _tool_name_for(messages, result.get("tool_call_id"))
        text = content_text(result)
        preview = _digest(text, _RESULT_PREVIEW_CHARS)
        lines.append(f"- {name} returned {len(text)} chars: {preview}")
    plural = "result" if len(results) == 1 else "results"
    return (
        f"(demo model) I received {len(results)} tool {plural}:\n"
        + "\n".join(lines)
        + (f"\n\n{SWITCH_HINT}")
    )


def _context_answer(messages: Sequence[Mapping[str, Any]], tool_names: Sequence[str]) -> str:
    """The plain text answer: prompt digest, context size, summary presence, switch hint."""
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    said = content_text(last_user)
    chars = sum(_message_chars(m) for m in messages)
    summary = any(
        m.get("role") == "system" and content_text(m).startswith(SUMMARY_PREFIX) for m in messages
    )
    summary_note = (
        "including a summary of earlier conversation"
        if summary
        else "with no summary of earlier conversation"
    )
    text = (
        f"(demo model) You said: '{_digest(said, _DIGEST_CHARS)}' ({len(said)} chars). "
        f"I received {len(messages)} messages ({chars} chars) of context, {summary_note}."
    )
    if tool_names:
        names = ", ".join(tool_names)
        text += f" Tools available: {names}; name one in your prompt and I will call it."
    return f"{text} {SWITCH_HINT}"


def demo_reply(request_body: Mapping[str, Any]) -> DemoReply:
    """Answer a chat-completions request body deterministically (no I/O, no randomness).

    * last message is a tool result -> a text summary of the tool results;
    * last user message names one or more of the request's tools -> parallel tool calls,
      arguments filled from each tool's JSON schema and the prompt;
    * otherwise -> a text answer stating it is the demo model.
    """
    raw = request_body.get("messages")
    messages: list[Mapping[str, Any]] = [m for m in raw or () if isinstance(m, Mapping)]
    context = prompt_chars(request_body)
    schemas = _tool_schemas(request_body)
    last = messages[-1] if messages else {}

    if last.get("role") == "tool":
        text = _tool_results_answer(messages)
    else:
        said = content_text(last) if last.get("role") == "user" else ""
        named = _named_tools(said, list(schemas))
        if named:
            filler = _ArgFiller(said)  # shared: "add 1 2 and mul 3 4" -> add(1, 2), mul(3, 4)
            calls = tuple(DemoToolCall(name, filler.arguments(schemas[name])) for name in named)
            out_chars = sum(len(c.name) + len(json.dumps(c.arguments)) for c in calls)
            return DemoReply(
                tool_calls=calls,
                prompt_tokens=estimate_tokens(context),
                completion_tokens=estimate_tokens(out_chars),
            )
        text = _context_answer(messages, list(schemas))
    return DemoReply(
        text=text,
        prompt_tokens=estimate_tokens(context),
        completion_tokens=estimate_tokens(len(text)),
    )
