"""Summarizers fold old messages into a bounded running summary.

The naive recipe appends each new summary to the previous one, so the
"compact" summary grows forever. Here a summarizer always receives the
previous summary and a character budget and returns *one* summary within it;
``ConversationState`` re-summarises (and finally cuts) anything longer.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from jupyter_agentmem.errors import SummarizerError
from jupyter_agentmem.vocabulary import SUMMARY_PREFIX

__all__ = ["SUMMARY_PREFIX", "ExtractiveSummarizer", "LLMSummarizer", "Summarizer", "message_text"]

Message = dict[str, Any]
_CONDENSED = re.compile(r"^\[\.\.\. (\d+) earlier points condensed\]$")


class Summarizer(ABC):
    """Folds messages into a running summary of at most ``max_chars`` characters."""

    #: True when summarising is cheap, local and cannot fail for network reasons;
    #: only such summarizers run inline inside ``add_message``.
    is_local: bool = False

    @abstractmethod
    def summarize(self, messages: Sequence[Message], previous_summary: str, max_chars: int) -> str:
        """Return the new summary covering ``previous_summary`` and ``messages``."""

    async def asummarize(
        self, messages: Sequence[Message], previous_summary: str, max_chars: int
    ) -> str:
        """Async twin; the default runs :meth:`summarize` in a worker thread."""
        return await asyncio.to_thread(self.summarize, messages, previous_summary, max_chars)


_NO_CALL: dict[str, Any] = {}  # the function of a malformed tool call (only read)


def message_text(message: Message) -> str:
    """The human-readable text of a message (content parts joined, tool calls named)."""
    content = message.get("content")
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        content = " ".join(p for p in parts if isinstance(p, str))
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls") or []
    if isinstance(calls, list) and calls:
        functions = [
            c.get("function", _NO_CALL) if isinstance(c, dict) else _NO_CALL for c in calls
        ]
        names = [f"{f.get('name', '?')}({f.get('arguments', '')})" for f in functions]
        text = (text + " " if text else "") + "called " + ", ".join(names)
    return text


def _clip(text: str, limit: int) -> str:
    text = " ".join(text[: limit * 2].split())  # never scan a huge message in full
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raw_line(message: Message, reach: int) -> str:
    """The first ``reach`` chars of a message's summary line before ``_clip`` collapses
    and cuts it: ``- role: text``, or ``- tool label -> N chars: text`` for a result.

    The common message (str content, no tool calls) skips :func:`message_text`'s
    general walk, and the text is cut to ``reach`` before it is formatted, so a
    2 MB tool result is never copied whole.
    """
    role = message.get("role", "?")
    if type(role) is not str:
        role = str(role)
    content = message.get("content")
    if type(content) is str and not message.get("tool_calls"):
        text = content  # what message_text returns for it
    else:
        text = message_text(message)
    if role == "tool":
        size = len(content) if isinstance(content, str) else len(text)
        label = message.get("name") or message.get("tool_call_id") or "tool"
        line = f"- tool {label} -> {size:,} chars: {text[:reach]}"
    else:
        line = f"- {role}: {text[:reach]}"
    return line[:reach]


class ExtractiveSummarizer(Summarizer):
    """Offline, deterministic summary: one short line per message, oldest lines
    condensed into a counter when the budget is reached. No model needed, so it
    suits tests, teaching, and users without an LLM for summaries."""

    is_local = True

    def __init__(self, line_chars: int = 160) -> None:
        if line_chars < 20:
            raise ValueError("line_chars must be at least 20")
        self.line_chars = line_chars

    def lines(self, messages: Sequence[Message]) -> list[str]:
        """One summary line per message, ``_clip`` of its raw line: one Python call a
        message, the whitespace of the whole batch collapsed by C-level maps."""
        limit = self.line_chars
        raw = [_raw_line(m, limit * 2) for m in messages]  # _clip reads no further
        keep = limit - 3
        return [
            text if len(text) <= limit else text[:keep] + "..."
            for text in map(" ".join, map(str.split, raw))
        ]

    def summarize(self, messages: Sequence[Message], previous_summary: str, max_chars: int) -> str:
        lines = _nonblank_lines(previous_summary)
        condensed = 0
        if lines and lines[0].startswith("[... ") and (match := _CONDENSED.match(lines[0])):
            condensed = int(match.group(1))
            del lines[0]
        lines += self.lines(messages)
        body = "\n".join(lines)
        dropped, cut = _lines_to_drop(lines, len(body) + 1 if lines else 0, condensed, max_chars)
        condensed += dropped
        body = body[cut:] if cut else body
        header = f"[... {condensed} earlier points condensed]\n" if condensed else ""
        return (header + body)[:max_chars]


def _nonblank_lines(text: str) -> list[str]:
    """The non-blank lines of ``text`` as ``str.splitlines`` cuts them.

    A summary written here has no line boundary but ``\\n`` (its lines are
    whitespace-collapsed), and ``split("\\n")`` is about twice as fast as
    ``splitlines``, which tests every char against a dozen boundaries; a few
    memchr scans for the other ASCII boundaries prove that it cuts the same lines.
    """
    if (
        text.isascii()
        and "\r" not in text
        and "\x0b" not in text
        and "\x0c" not in text
        and "\x1c" not in text
        and "\x1d" not in text
        and "\x1e" not in text
    ):
        return list(filter(str.strip, text.split("\n")))
    return list(filter(str.strip, text.splitlines()))


def _header_chars(condensed: int) -> int:
    """``len(f"[... {condensed} earlier points condensed]\\n")``, 0 without a counter."""
    return 32 + len(str(condensed)) if condensed else 0


def _lines_to_drop(lines: list[str], total: int, condensed: int, max_chars: int) -> tuple[int, int]:
    """How many of the oldest ``lines`` (``total`` chars with their newlines) go into the
    counter, the fewest so that the rest and the counter's header fit in ``max_chars``
    (all of them if nothing fits), and how many chars of the joined lines that drops.

    A walk from the oldest line: a compaction drops about as many lines as it adds,
    so this is a few steps, cheaper than prefix sums over the whole summary (and
    never more steps than lines, each of which was built or split just before).
    """
    need = total - max_chars  # chars to free, before the header
    if need + _header_chars(condensed) <= 0 or not lines:
        return 0, 0
    # The header only grows as lines are dropped: aim at the smallest one, check the real one.
    target = need + _header_chars(condensed + 1)
    freed = dropped = 0
    for length in map(len, lines):
        freed += length + 1
        dropped += 1
        if freed >= target:
            target = need + _header_chars(condensed + dropped)
            if freed >= target:
                break
    return dropped, freed


_LLM_PROMPT = (
    "You maintain the running summary of a conversation between a user and an AI "
    "assistant that uses tools. Merge the new messages into the current summary. Keep "
    "facts, decisions, names, numbers, open questions and what tools found; drop "
    "pleasantries. Write at most {max_chars} characters. Reply with the summary only."
)


class LLMSummarizer(Summarizer):
    """Summaries written by a chat model through the openai SDK (sync or async client).

    The request is bounded too: each message is clipped to ``message_chars``
    and the whole transcript to ``request_chars``, so summarising a session with
    a huge tool result never sends megabytes.
    """

    is_local = False

    def __init__(
        self,
        client: Any = None,
        model: str = "gpt-4o-mini",
        *,
        async_client: Any = None,
        temperature: float = 0.0,
        message_chars: int = 1500,
        request_chars: int = 24_000,
    ) -> None:
        if client is None and async_client is None:
            raise ValueError("LLMSummarizer needs an openai client (OpenAI or AsyncOpenAI)")
        self.client = client
        self.async_client = async_client
        self.model = model
        self.temperature = temperature
        self.message_chars = message_chars
        self.request_chars = request_chars

    def _request(
        self, messages: Sequence[Message], previous_summary: str, max_chars: int
    ) -> dict[str, Any]:
        rendered: list[str] = []
        budget = self.request_chars
        for message in reversed(messages):
            line = f"{message.get('role', '?')}: {_clip(message_text(message), self.message_chars)}"
            if len(line) > budget:
                rendered.append("[... older messages omitted]")
                break
            rendered.append(line)
            budget -= len(line)
        transcript = "\n".join(reversed(rendered))
        return {
            "model": self.model,
            "temperature": self.temperature,
            "messages": [
                {"role": "system", "content": _LLM_PROMPT.format(max_chars=max_chars)},
                {
                    "role": "user",
                    "content": f"Current summary:\n{previous_summary or '(none)'}\n\n"
                    f"New messages:\n{transcript}",
                },
            ],
        }

    @staticmethod
    def _text(response: Any) -> str:
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError) as exc:
            raise SummarizerError(f"the summary model returned no choices: {exc}") from exc
        if not isinstance(text, str) or not text.strip():
            raise SummarizerError("the summary model returned an empty summary")
        return text.strip()

    def summarize(self, messages: Sequence[Message], previous_summary: str, max_chars: int) -> str:
        if self.client is None:
            raise SummarizerError("this LLMSummarizer has only an async client: use acompact()")
        try:
            response = self.client.chat.completions.create(
                **self._request(messages, previous_summary, max_chars)
            )
        except Exception as exc:
            raise SummarizerError(f"summary request failed: {exc}") from exc
        return self._text(response)

    async def asummarize(
        self, messages: Sequence[Message], previous_summary: str, max_chars: int
    ) -> str:
        if self.async_client is None:
            return await super().asummarize(messages, previous_summary, max_chars)
        try:
            response = await self.async_client.chat.completions.create(
                **self._request(messages, previous_summary, max_chars)
            )
        except Exception as exc:
            raise SummarizerError(f"summary request failed: {exc}") from exc
        return self._text(response)
