"""The manager's turn log: a mixin of SessionManager, like ``eviction.py`` and ``tiering.py``.

It owns the manager's :class:`~jupyter_agentmem.memory.journal.Journal` (the
background writer, ``journal.py``): it numbers the messages the states commit
(also while logging is off, so a merge never drops them) and switches logging
on and off at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_agentmem.stores.base import SessionStore

from .fields import ManagerFields
from .journal import Journal
from .replay import supports_log

if TYPE_CHECKING:
    from .state import ConversationState


class TurnLog(ManagerFields):
    """``committed`` (the StateOwner hook), ``set_durable_turns`` and ``sync_log``."""

    if TYPE_CHECKING:  # provided by SessionManager

        def flush(self, ids: Iterable[str] | None = None) -> int: ...

    def committed(self, state: ConversationState, messages: Sequence[dict[str, Any]]) -> None:
        """Messages were appended (lock held): queue them for the turn log."""
        if self.journal is not None:
            self.journal.record(state, list(messages))
        elif self._writer is not None:  # logging off for now: keep numbering them
            marks = state.log_marks
            marks[self._writer] = marks.get(self._writer, 0) + len(messages)

    # ------------------------------------------------------------- turn log
    def _journal_for(self, store: SessionStore) -> Journal | None:
        durable = self.durable_turns
        if durable is None:
            durable = bool(getattr(store, "persistent", True))
        if not (durable and supports_log(store)):
            return None
        journal = Journal(store, self, writer=self._writer)
        self._writer = journal.writer
        return journal

    def set_durable_turns(self, durable: bool | None) -> None:
        """Turn the turn log on (``True``; ``None``: if the store outlives the process) or
        off (``False``, for throw-away work: only evictions and flushes save).

        Switching it on saves live sessions whole first, so that every message added
        since a session's last save is numbered (the merge of concurrent kernels
        relies on it); switched off, messages are still numbered, not logged."""
        old = self.journal
        with self.lock:
            self.durable_turns, self.journal = durable, None
        if old is not None:
            old.close()  # drains what is queued
        elif self._writer is None:
            self.flush()
        journal = self._journal_for(self.store)
        with self.lock:
            self.journal = journal

    def sync_log(self, timeout: float | None = 0.2) -> bool:
        """Wait until every message added so far is in the store's turn log."""
        journal = self.journal
        return journal is None or journal.sync(timeout)
