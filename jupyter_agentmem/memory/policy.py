"""StatePolicy: the limits and helpers shared by many sessions (one object, not one per session)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import defaults
from .summarize import Summarizer, message_text

if TYPE_CHECKING:
    from .truncate import ToolOutputTruncator

TOKEN_COUNTER_HINT = (
    "token_counter must be a callable returning an int, e.g. with tiktoken: "
    "enc = tiktoken.encoding_for_model('gpt-4o'); token_counter=lambda text: len(enc.encode(text))"
)


@dataclass(frozen=True)
class StatePolicy:
    """Limits and helpers shared by many sessions.

    Compaction starts when the recent window passes ``max_recent`` messages,
    ``max_recent_bytes`` or ``max_recent_tokens`` and folds the oldest messages
    until the window is back under ``keep_fraction`` of each limit, so a busy
    session compacts every few turns rather than on every message.
    """

    max_recent: int = defaults.MAX_RECENT
    max_recent_bytes: int = defaults.MAX_RECENT_BYTES
    max_recent_tokens: int | None = None
    token_counter: Callable[[str], int] | None = None
    max_summary_chars: int = defaults.MAX_SUMMARY_CHARS
    keep_fraction: float = defaults.KEEP_FRACTION
    summarizer: Summarizer | None = None
    auto_compact: bool = True
    truncator: ToolOutputTruncator | None = None

    def __post_init__(self) -> None:
        if self.max_recent < 1:
            raise ValueError("max_recent must be at least 1")
        if self.max_recent_bytes < 1024:
            raise ValueError("max_recent_bytes must be at least 1024")
        if self.max_summary_chars < 100:
            raise ValueError("max_summary_chars must be at least 100")
        if not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError("keep_fraction must be in (0, 1]")
        if self.max_recent_tokens is not None and self.token_counter is None:
            raise ValueError(f"max_recent_tokens needs a token_counter: {TOKEN_COUNTER_HINT}")

    def with_overrides(self, **changes: Any) -> StatePolicy:
        """This policy with the changes that are not None (itself when there are none)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def get_truncator(self) -> ToolOutputTruncator:
        if self.truncator is not None:
            return self.truncator
        return _default_truncator()

    def count_tokens(self, messages: Sequence[dict[str, Any]]) -> list[int] | None:
        """Token counts of ``messages`` (None without a counter), checked before any
        state changes: a counter returning a list, a str or a negative number raises
        ``TypeError`` and nothing is added."""
        counter = self.token_counter
        if counter is None:
            return None
        counts = [counter(message_text(m)) for m in messages]
        for count in counts:
            if type(count) is not int or count < 0:
                raise TypeError(
                    f"token_counter returned {type(count).__name__} {count!r:.40}; "
                    + TOKEN_COUNTER_HINT
                )
        return counts


@functools.cache
def _default_truncator() -> ToolOutputTruncator:
    """One shared default truncator, imported lazily (it is only needed for tool results)."""
    from .truncate import ToolOutputTruncator

    return ToolOutputTruncator()


DEFAULT_POLICY = StatePolicy()
