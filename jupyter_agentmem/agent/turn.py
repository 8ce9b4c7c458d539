"""The logic of one turn, with no I/O: what happened goes in, what to do next comes out.

As in h11/wsproto ("one loop, two drivers"): :class:`TurnLoop` never touches a
socket, a thread or an event loop. A driver asks :meth:`TurnLoop.next_step` and
gets :class:`CallModel` (stream a completion with these arguments, feeding each
event to :meth:`TurnLoop.on_event`), :class:`RunTools` (run these calls, feeding
each outcome to :meth:`TurnLoop.on_tool_outcome`) or :class:`Done` (commit these
messages). ``Agent._run`` and ``Agent._arun`` are the two thin drivers, so sync
and async cannot drift apart, and the rules (bounded tool rounds, no tools on the
last round, every result and error truncated, what an interrupted turn stores)
are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_agentmem.memory.truncate import TruncationResult
from jupyter_agentmem.model.adapter import Event, TextDelta, ToolCall
from jupyter_agentmem.model.tools import Tool, ToolOutcome

Message = dict[str, Any]

INTERRUPTED = "\n\n[interrupted by the user]"
ERROR_PREFIX = "Error: "


@dataclass(frozen=True)
class ToolResult:
    """A tool call and its (already truncated) result, as stored in the session.

    ``error`` is the (truncated) error text when the tool failed, else None.
    """

    call: ToolCall
    content: str
    error: str | None
    seconds: float
    saved_chars: int


TurnEvent = Event | ToolResult


@dataclass(frozen=True)
class CallModel:
    """Stream one completion; ``request`` holds the ``stream_chat`` keyword arguments."""

    request: dict[str, Any]


@dataclass(frozen=True)
class ToolJob:
    """One requested call; ``tool`` is None when the model named no registered tool."""

    call: ToolCall
    tool: Tool | None
    known: tuple[str, ...] = ()

    def refusal(self) -> ToolOutcome:
        """The answer for a call to a tool that does not exist."""
        names = ", ".join(sorted(self.known)) or "none"
        return ToolOutcome(None, f"there is no tool named {self.call.name!r} (available: {names})")


@dataclass(frozen=True)
class RunTools:
    """Run these calls in order, each outcome back through ``on_tool_outcome``."""

    jobs: tuple[ToolJob, ...]


@dataclass(frozen=True)
class Done:
    """The turn is complete: commit ``messages`` to the session at once."""

    messages: list[Message]
    saved_chars: int


Step = CallModel | RunTools | Done


@dataclass
class TurnLoop:
    """One turn's state machine: context -> model -> tools -> ... -> messages to commit.

    ``context`` returns what precedes the turn (system message, summary, recent
    messages); ``request`` holds the fixed request arguments (model, temperature,
    max_tokens); ``truncate`` bounds every tool result and error; ``record`` sees
    every event the consumer sees (the Response keeps text, usage, results).
    """

    prompt: str
    context: Callable[[], list[Message]]
    request: dict[str, Any]
    tools: list[Tool]
    max_rounds: int
    truncate: Callable[[Any], TruncationResult]
    record: Callable[[TurnEvent], None]
    staged: list[Message] = field(init=False, default_factory=list)
    text: list[str] = field(init=False, default_factory=list)
    calls: list[ToolCall] = field(init=False, default_factory=list)
    pending: list[ToolCall] = field(init=False, default_factory=list)
    saved_chars: int = field(init=False, default=0)
    rounds: int = field(init=False, default=0)
    _streamed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.staged.append({"role": "user", "content": self.prompt})

    def next_step(self) -> Step:
        """What to do now; call again when the step's I/O is done."""
        if self.pending:
            raise RuntimeError("next_step() before every tool outcome was fed back")
        if not self._streamed:
            return self._call_model()
        if self.calls:
            return self._run_tools()
        return Done(self.messages(interrupted=False), self.saved_chars)

    def on_event(self, event: Event) -> TurnEvent | None:
        """Take one stream event; returns it for the consumer (tool calls wait: None)."""
        if isinstance(event, ToolCall):
            self.calls.append(event)
            return None
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        self.record(event)
        return event

    def on_tool_outcome(self, call: ToolCall, outcome: ToolOutcome, seconds: float) -> ToolResult:
        """Take a tool's outcome; results and errors go through the same truncation."""
        if outcome.error is not None:
            cut = self.truncate(ERROR_PREFIX + outcome.error)
            error: str | None = cut.text.removeprefix(ERROR_PREFIX)
        else:
            cut, error = self.truncate(outcome.value), None
        self.staged.append({"role": "tool", "tool_call_id": call.id, "content": cut.text})
        self.pending.remove(call)
        self.saved_chars += cut.saved_chars
        result = ToolResult(call, cut.text, error, seconds, cut.saved_chars)
        self.record(result)
        return result

    def messages(self, interrupted: bool) -> list[Message]:
        """The turn's messages; an interrupted turn answers pending calls and is marked."""
        staged = list(self.staged)
        answer = "".join(self.text)
        if interrupted:
            for call in self.pending:
                staged.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": ERROR_PREFIX + "interrupted before this tool ran",
                    }
                )
            answer += INTERRUPTED
        staged.append({"role": "assistant", "content": answer})
        return staged

    # -- transitions ---------------------------------------------------------------------------
    def _call_model(self) -> CallModel:
        """The context so far; tools are offered except on the last allowed round."""
        self._streamed = True
        offer = [t.spec for t in self.tools] if self.rounds < self.max_rounds else []
        messages = self.context() + self.staged
        return CallModel({**self.request, "messages": messages, "tools": offer or None})

    def _run_tools(self) -> Step:
        calls, self.calls = self.calls, []
        self.staged.append(
            {
                "role": "assistant",
                "content": "".join(self.text) or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ],
            }
        )
        self.text = []
        self.pending = list(calls)
        by_name = {t.name: t for t in self.tools}
        known = tuple(by_name)
        self._streamed = self.rounds >= self.max_rounds  # after the last round: done
        self.rounds += 1
        return RunTools(tuple(ToolJob(c, by_name.get(c.name), known) for c in calls))
