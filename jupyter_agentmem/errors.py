"""Named errors whose messages say how to fix the problem.

All of them subclass :class:`AgentMemError` (an ordinary ``Exception``), so a
notebook can catch everything of ours with one ``except`` and nothing else.
"""

from __future__ import annotations

import re
import traceback


class AgentMemError(Exception):
    """Base class of every error raised by jupyter-agentmem.

    In IPython these render as one line (``Name: message``) instead of a
    traceback wall: the message already says what to do. ``%tb`` shows the full
    traceback (IPython renders the same error again for it, and every render
    after the first is the full one), and ``%debug`` opens the debugger there.
    """

    _rendered = False

    def _render_traceback_(self) -> list[str]:
        if not self._rendered:
            self._rendered = True
            return [f"{type(self).__name__}: {self}"]
        text = "".join(traceback.format_exception(type(self), self, self.__traceback__))
        return text.rstrip("\n").split("\n")


class NotLoadedError(AgentMemError):
    """The extension is not loaded in this kernel (every magic says so the same way)."""

    def __init__(self) -> None:
        super().__init__("jupyter-agentmem is not loaded: run %load_ext jupyter_agentmem first")


class InvalidMessageError(AgentMemError, TypeError):
    """A message is not a JSON-shaped dict with a ``role`` (it could not be persisted)."""


class StoreError(AgentMemError):
    """A session store could not be reached or written; the data stays in memory."""


class StoreCorruptError(StoreError):
    """A store file or value is not ours or is damaged; it is left untouched."""


class StoreFullError(StoreError):
    """The disk (or quota) holding the store is full; sessions stay in memory."""


class StoreReadOnlyError(StoreError):
    """The store file or its directory cannot be written by this process."""


class SessionConflictError(StoreError):
    """Another process changed the stored session since this one loaded it."""


class SummarizerError(AgentMemError):
    """The summarizer failed; the messages it was given were kept, not compacted."""


_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|token|api_key)=)[^&\s'\"]+")


def mask_credentials(text: str) -> str:
    """``text`` with any password in a URL (``redis://:pw@host``, ``?password=pw``)
    replaced by ``***``: for every setting display, log line and error message."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _QUERY_PASSWORD.sub(r"\g<head>***", text)


class ServeError(AgentMemError):
    """The HTTP server cannot start as configured; the message says what to change."""


class TokensFileError(ServeError):
    """A tokens file line is not ``TOKEN TENANT`` (or a token repeats)."""
