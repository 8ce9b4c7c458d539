"""Server-sent events, line by line: the ``data`` of each event, per the WHATWG spec.

Why by hand: the openai SDK's decoder (``openai._streaming.SSEDecoder``) is
private and, through ``Stream``, builds a pydantic model per chunk, which is
most of the cost of streaming a long answer. The SDK's public surface for a
raw body (``with_streaming_response`` -> ``iter_lines``) gives lines, not
events, so the few rules of the event-stream format live here, sans I/O:

* a blank line ends an event; ``data:`` lines of one event are joined with ``\\n``;
* lines starting with ``:`` are comments (keep-alives); ``event:``, ``id:``,
  ``retry:`` and unknown fields are accepted and ignored (chat completions do
  not use them, and the SDK dispatches on the data alone);
* an event with no ``data`` is not dispatched; an unfinished event at the end
  of the body is dropped;
* an event's data is bounded (:data:`MAX_EVENT_CHARS`): a server that sends
  ``data:`` lines without ever ending the event raises ``ValueError`` instead of
  growing the kernel's memory.
"""

from __future__ import annotations

__all__ = ["MAX_EVENT_CHARS", "SSELines"]

#: Characters of data one event may hold (a chat chunk is ~100-1,000).
MAX_EVENT_CHARS = 16 << 20


class SSELines:
    """Feed body lines (without their line ending); get the data of each complete event."""

    __slots__ = ("_chars", "_data")

    def __init__(self) -> None:
        self._data: list[str] = []
        self._chars = 0

    def feed(self, line: str) -> str | None:
        """The event's data when ``line`` completes one, else ``None``; ``ValueError``
        when one event's data passes :data:`MAX_EVENT_CHARS`."""
        if line.startswith("data:"):  # the hot path: one data line per chunk
            value = line[6:] if line.startswith("data: ") else line[5:]
            self._chars += len(value) + 1
            if self._chars > MAX_EVENT_CHARS:
                raise ValueError(f"an event with more than {MAX_EVENT_CHARS:,} chars of data")
            self._data.append(value)
            return None
        if line:
            if line == "data":  # a field with no colon: its value is empty
                self._data.append("")
            return None  # otherwise a comment, or a field chat completions do not use
        if not self._data:
            return None
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        self._data = []
        self._chars = 0
        return data
