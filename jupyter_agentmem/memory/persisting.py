"""The document half of ``ConversationState``: to and from the saved JSON document.

One class split across modules so each has one job (like :mod:`.compaction`):
the attributes are the state's own, the lock rules are the state's (every
method here runs with the state's lock held, or on a state no one else sees).
"""

from __future__ import annotations

from array import array
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .compaction import Compacting, Message
from .document import (
    FORMAT_VERSION,
    MAX_LOG_MARKS,
    Document,
    count_user_turns,
    field,
    log_marks_of,
    parse_document,
)

__all__ = ["NO_PENDING", "Persisting"]

#: ``pending`` of a state with nothing waiting to be saved.
NO_PENDING: tuple[tuple[str, int], ...] = ()


class Persisting(Compacting):
    """Serialisation, restore and rebase of a ``ConversationState``."""

    # The save bookkeeping lives in these slots; ConversationState adds the rest.
    __slots__ = (
        "_bytes",
        "base_total",
        "created_at",
        "last_access",
        "lineage",
        "log_marks",
        "messages_total",
        "pending",
        "revision",
        "truncated_chars_saved",
        "turns",
    )
    _bytes: int
    base_total: int
    created_at: float
    last_access: float
    lineage: str
    log_marks: dict[str, int]
    messages_total: int
    pending: tuple[tuple[str, int], ...]
    revision: int
    truncated_chars_saved: int
    turns: int

    if TYPE_CHECKING:
        session_id: str

        def _loaded(self) -> AbstractContextManager[list[Message]]: ...
        def _changed(self) -> None: ...
        def _estimate(self) -> int: ...

    def to_dict(self) -> Document:
        """A JSON document with everything needed to restore this session exactly."""
        with self._loaded() as messages:
            doc = {
                "format": FORMAT_VERSION,
                "session_id": self.session_id,
                "summary": self._summary,
                "messages": list(messages),
                "messages_total": self.messages_total,
                "turns": self.turns,
                "compactions": self.compactions,
                "truncated_chars_saved": self.truncated_chars_saved,
                "created_at": self.created_at,
                "last_access": self.last_access,
                "revision": self.revision,
                "writes": self.lineage.split(),
            }
            if self.log_marks:  # the newest writers' (ids sort by start time), bounded
                newest = sorted(self.log_marks)[-MAX_LOG_MARKS:]
                doc["log_marks"] = {w: self.log_marks[w] for w in newest}
            return doc

    def load_document(self, data: Document) -> None:
        """Replace the content with a document's (lock held, or the object private)."""
        doc = parse_document(data, self.session_id, self.policy)
        self._messages, self._sizes, self._tokens = doc.messages, doc.sizes, doc.tokens
        self._window_bytes, self._window_tokens = sum(doc.sizes), sum(doc.tokens)
        self._summary = doc.summary
        self.messages_total, self.turns = doc.messages_total, doc.turns
        self.compactions, self.truncated_chars_saved = doc.compactions, doc.truncated_chars_saved
        self.created_at, self.last_access = doc.created_at, doc.last_access
        self.revision, self.lineage = doc.revision, doc.lineage
        for writer, seq in log_marks_of(data).items():  # a writer's mark only ever grows
            self.log_marks[writer] = max(self.log_marks.get(writer, 0), seq)
        self.base_total = self.messages_total
        self.pending = NO_PENDING
        self._generation += 1
        self._changed()

    def rebase(self, saved: Document, since: int) -> None:
        """After a save merged in another writer's turns while this state stayed in
        memory: take the merged document plus the messages added since the
        snapshot that was saved (``messages_total`` was ``since``). Lock held."""
        messages = self._messages
        if messages is None:
            return
        extra = self.messages_total - since
        newer = messages[len(messages) - extra :] if extra > 0 else []
        total = int(field(saved, "messages_total"))
        users = count_user_turns(newer)
        self.load_document(
            dict(
                saved,
                messages=saved["messages"] + newer,
                messages_total=total + len(newer),
                turns=int(saved.get("turns", 0)) + users,
            )
        )
        self.base_total = total
        self.revision = int(saved["revision"])

    def unload(self) -> None:
        """Drop the content after it was saved (lock held); the next use restores it."""
        self._messages = None
        self._sizes = array("q")
        self._tokens = array("q")
        self._window_bytes = self._window_tokens = 0
        self._summary = ""
        self._generation += 1
        self._bytes = self._estimate()
