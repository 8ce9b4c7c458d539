"""What every peer adapter shares: the turn protocol, the stub summary, the checks.

Why one protocol: the comparison is only honest if every memory design sees the
same messages in the same order, with the model called at the same points. A
turn of the workload (see ``benchmarks/workload.py``) is

    user message -> model call 1 -> assistant with 4 tool calls -> 4 tool results
    -> model call 2 -> 500-char answer

and at each model call the peer builds the context it would send. The observer
sees that context in OpenAI chat format, which is where the two checks happen:
how many characters go to the model, and whether a ``tool`` result arrives
without the assistant ``tool_calls`` entry that asked for it (the provider 400
that LangChain issues #33245 / #38352 report).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from jupyter_agentmem.demo.reply import estimate_tokens, prompt_chars

from .. import workload

Message = dict[str, Any]
Outputs = Callable[[int, int, int], str]
"""(session, turn, call) -> the tool's raw JSON text."""
Observe = Callable[[int, list[Message]], None]
"""(turn, context in OpenAI chat format) at each model call."""

#: Token budget for the LangChain / LangGraph peers (``trim_messages`` max_tokens,
#: ``ConversationSummaryBufferMemory.max_token_limit``, ``SummarizationMiddleware``
#: trigger). 32k tokens is what a user sizing for a 32k-context model would pick;
#: one workload turn is ~8k approximate tokens, so ~3-4 turns fit.
TOKEN_BUDGET = 32_000

#: The deterministic summary every peer's summarizer returns (no model calls), so
#: only memory handling differs. About the size of a short real summary.
STUB_SUMMARY = (
    "Summary: the user asked a series of lookup questions; the assistant called the "
    "lookup tool four times per question and answered each with the rows it found. "
    "No open questions."
)


class Observer:
    """Receives each context a peer would send to the model (session 0 only).

    Context sizes are kept only for the ``keep`` turns (1-based): the observer runs
    inside the heap measurement, so a record per turn would be charged to sessions.
    """

    def __init__(self, keep: Collection[int] = ()) -> None:
        self.keep = frozenset(keep)
        self.calls = 0
        self.orphan_calls = 0
        self.starts_with_tool = 0
        self.first_orphan: str | None = None
        self.turn_chars = 0
        self.chars_by_turn: dict[int, int] = {}

    def __call__(self, turn: int, context: list[Message]) -> None:
        self.calls += 1
        if turn + 1 in self.keep:
            chars = prompt_chars({"messages": context})
            self.chars_by_turn[turn] = self.chars_by_turn.get(turn, 0) + chars
        problem = orphan_tool_result(context)
        if problem is not None:
            self.orphan_calls += 1
            self.first_orphan = self.first_orphan or f"turn {turn}: {problem}"
        body = [m for m in context if m.get("role") != "system"]
        if body and body[0].get("role") == "tool":
            self.starts_with_tool += 1

    def report(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "orphan_calls": self.orphan_calls,
            "starts_with_tool": self.starts_with_tool,
            "first_orphan": self.first_orphan,
            "chars_by_turn": self.chars_by_turn,
        }


def orphan_tool_result(context: list[Message]) -> str | None:
    """Describe the first ``tool`` message whose call id no earlier assistant
    message in the same context announced (None when the context is valid)."""
    announced: set[str] = set()
    for index, message in enumerate(context):
        for call in message.get("tool_calls") or ():
            announced.add(str(call.get("id")))
        if message.get("role") == "tool" and str(message.get("tool_call_id")) not in announced:
            return f"message {index} answers unknown call {message.get('tool_call_id')!r}"
    return None


def tokens(chars: int) -> int:
    """Approximate tokens (4 chars each), the same ruler for every peer."""
    return estimate_tokens(chars)


class Peer:
    """One memory design under test. Subclasses fill in the hooks.

    ``start`` creates a session handle; ``turn`` runs one workload turn on it,
    calling ``observe(turn, context)`` at both model calls when given.
    ``version`` names the installed package(s); ``note`` says what was adapted.
    """

    name = ""
    label = ""
    version = ""
    note = ""
    persistent = False
    write_through = False

    def setup(self, workdir: str, sessions: int = 1000) -> None:
        """Build shared objects (graphs, stores); ``workdir`` is a private temp dir and
        ``sessions`` how many sessions the run will create."""

    def prepare_outputs(self, texts: list[str]) -> list[str]:
        """The tool texts of the memory runs' pool, as this peer receives them."""
        return texts

    def start(self, index: int) -> Any:
        raise NotImplementedError

    def turn(
        self,
        handle: Any,
        index: int,
        turn: int,
        outputs: Outputs,
        observe: Observe | None = None,
    ) -> None:
        raise NotImplementedError

    def disk_bytes(self) -> int:
        """Bytes written to disk so far (persistent peers)."""
        return 0

    def flush(self, handles: list[Any]) -> None:
        """Make every session durable (no-op for write-through peers)."""

    def restore(self, indices: list[int]) -> int:
        """Load the given sessions back as a new process would; return messages seen."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections and files."""


def chat_turn(
    index: int, turn: int, outputs: Outputs
) -> tuple[Message, Message, list[Message], Message]:
    """The turn's messages in OpenAI chat format (user, tool-call message, results, answer)."""
    calls = workload.tool_calls(index, turn)
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": outputs(index, turn, j)}
        for j, call in enumerate(calls)
    ]
    return (
        workload.user_message(index, turn),
        {"role": "assistant", "content": None, "tool_calls": calls},
        results,
        workload.answer_message(index, turn),
    )


class ListPeer(Peer):
    """A peer driven message by message: ``add`` appends, ``model_input`` builds what
    goes to the model (and applies the peer's policy there, e.g. trim-and-store-back),
    ``to_chat`` converts that input to OpenAI chat format for the observer."""

    def add(self, handle: Any, messages: list[Message]) -> None:
        raise NotImplementedError

    def model_input(self, handle: Any) -> Any:
        raise NotImplementedError

    def to_chat(self, native: Any) -> list[Message]:
        return list(native)

    def turn(
        self,
        handle: Any,
        index: int,
        turn: int,
        outputs: Outputs,
        observe: Observe | None = None,
    ) -> None:
        user, asked, results, answer = chat_turn(index, turn, outputs)
        self.add(handle, [user])
        native = self.model_input(handle)
        if observe is not None:
            observe(turn, self.to_chat(native))
        self.add(handle, [asked, *results])
        native = self.model_input(handle)
        if observe is not None:
            observe(turn, self.to_chat(native))
        self.add(handle, [answer])
