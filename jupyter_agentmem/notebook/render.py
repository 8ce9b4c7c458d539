"""Showing a turn in a notebook cell: a live display while streaming, then stable outputs.

Why this shape: the streamed answer is one display updated in place
(``display_id``), coalesced in time *and* bytes so a long answer never trips
jupyter_server's IOPub rate limits (each update re-sends the whole text, so the
interval grows with the text: bytes/s stay under ``bytes_per_second``). The live
display starts empty and is emptied again when the answer is complete; the tool
calls are then shown once, and the answer becomes the cell's result (``Out[n]``,
held by ``_``) with the footer below it. The finished cell reads top to bottom:
notice, tool calls, answer, footer. nbval only sees the first version of an
updated display, so an empty first and last version, and the answer as the
result, make a notebook regression test compare the real answer.
"""

from __future__ import annotations

import html
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from jupyter_agentmem.agent.chat import Response, ToolResult, TurnEvent
from jupyter_agentmem.model.adapter import TextDelta
from jupyter_agentmem.units import human_bytes

Bundle = dict[str, str]
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
MAX_TOOL_LINES = 20
EMPTY: Bundle = {"text/markdown": "", "text/plain": ""}  # the live display, first and last


class AgentAnswer(str):
    """The final answer: a ``str`` (usable in code) that renders as Markdown (or as
    preformatted text), with the turn's ``footer`` under it in a notebook."""

    render_as: str = "markdown"
    footer: str = ""

    def __new__(cls, text: str, render_as: str = "markdown", footer: str = "") -> AgentAnswer:
        answer = super().__new__(cls, text)
        answer.render_as = render_as
        answer.footer = footer
        return answer

    def _footer_html(self) -> str:
        return f"\n\n<sub>{self.footer}</sub>" if self.footer else ""

    def _repr_markdown_(self) -> str | None:
        return str(self) + self._footer_html() if self.render_as == "markdown" else None

    def _repr_html_(self) -> str | None:
        if self.render_as == "markdown":
            return None
        return f"<pre>{html.escape(str(self))}</pre>{self._footer_html()}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # the text itself, not a quoted repr


def code_blocks(text: str) -> str:
    """The fenced code of an answer (all blocks joined); empty if it has none."""
    return "\n\n".join(b.strip("\n") for b in _FENCE.findall(text)).strip("\n")


def footer(response: Response) -> str:
    """``model · session · tokens · time · session memory`` after a turn."""
    from .namespace import label

    parts = [f"{response.model}", f"session `{label(response.session)}`"]
    if response.usage is not None:
        u = response.usage
        parts.append(f"{u.prompt_tokens:,} → {u.completion_tokens:,} tokens")
    parts.append(f"{response.elapsed:.1f} s")
    if response.done:
        parts.append(f"session memory {human_bytes(response.session_bytes)}")
    if response.interrupted:
        parts.append("interrupted (partial answer stored)")
    return " · ".join(parts)


def tool_line(result: ToolResult) -> str:
    """One compact line per tool call with a collapsed preview of the stored result.

    Only characters every default font has (no emoji: Debian's Chromium shows 🔧 as a box)."""
    args = result.call.arguments
    args = args if len(args) <= 80 else args[:77] + "…"
    status = "error: " + result.error if result.error else f"{len(result.content):,} chars"
    if result.saved_chars:
        status += f", {result.saved_chars:,} cut"
    preview = html.escape(result.content[:300] + ("…" if len(result.content) > 300 else ""))
    return (
        f"<details><summary>tool <code>{html.escape(result.call.name)}"
        f"({html.escape(args)})</code> → {html.escape(status)}</summary>"
        f"<pre>{preview}</pre></details>"
    )


def _ipython_display() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from IPython.display import display, update_display

    return display, update_display


class CellRenderer:
    """Coalesces streamed events into few display updates (see the module docstring)."""

    def __init__(
        self,
        header: str,
        *,
        live: bool = True,
        interval: float = 0.05,
        bytes_per_second: int = 400_000,
        display: Callable[..., Any] | None = None,
        update: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if display is None or update is None:
            display, update = _ipython_display()
        self._display = display
        self._update = update
        self._clock = clock
        self.header = header
        self.live = live
        self.interval = interval
        self.bytes_per_second = max(1, bytes_per_second)
        self.text: list[str] = []
        self._chars = 0
        self.tools: deque[str] = deque(maxlen=MAX_TOOL_LINES)
        self.tool_count = 0
        self.updates = 0
        self.bytes_sent = 0
        self._dirty = False
        self._next = 0.0
        self._display_id: str | None = None
        if live:
            handle = self._display(EMPTY, raw=True, display_id=True)
            self._display_id = getattr(handle, "display_id", None)

    def _tools_markdown(self) -> str:
        hidden = self.tool_count - len(self.tools)
        lines = [f"*… {hidden} earlier tool calls*"] if hidden > 0 else []
        return "\n".join(lines + list(self.tools))

    def _live_bundle(self, suffix: str = "") -> Bundle:
        text = "".join(self.text)
        tools = self._tools_markdown()
        body = "\n\n".join(p for p in (tools, text + " ▌" if not suffix else text, suffix) if p)
        if suffix:  # a final state: keep the text for terminals and saved notebooks
            return {"text/markdown": body, "text/plain": text}
        # while streaming, the text is sent once (as Markdown), not twice
        return {"text/markdown": body, "text/plain": f"{self.header}: {self._chars:,} chars…"}

    def _push(self, bundle: Bundle) -> None:
        if self._display_id is None:
            return
        self._update(bundle, raw=True, display_id=self._display_id)
        self.updates += 1
        self.bytes_sent += sum(len(v) for v in bundle.values())

    def feed(self, event: TurnEvent) -> None:
        """Take one event; updates the display only when the time/byte budget allows."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            self._chars += len(event.text)
        elif isinstance(event, ToolResult):
            self.tools.append(tool_line(event))
            self.tool_count += 1
        else:
            return
        self._dirty = True
        now = self._clock()
        if self.live and now >= self._next:
            self._flush(now)

    def _flush(self, now: float) -> None:
        bundle = self._live_bundle()
        self._push(bundle)
        self._dirty = False
        size = sum(len(v) for v in bundle.values())
        self._next = now + max(self.interval, size / self.bytes_per_second)

    def finish(self, response: Response) -> str:
        """Answer complete: the live display is emptied again (as it began) and the tool
        calls are shown once as a new output. Returns the footer, which the caller puts
        under the answer (the cell's result, the last output)."""
        self._push(EMPTY)
        tools = self._tools_markdown()
        if tools:
            plain = f"{self.tool_count} tool call(s)"
            self._display({"text/markdown": tools, "text/plain": plain}, raw=True)
        return footer(response)

    def stopped(self, response: Response, reason: str) -> None:
        """Interrupted or failed: keep the partial answer visible with the reason."""
        note = f"<sub>{reason} · {footer(response)}</sub>"
        if self._display_id is not None:
            self._push(self._live_bundle(suffix=note))
        else:
            self._display(self._live_bundle(suffix=note), raw=True)
