"""The seam between a conversation state and the manager that owns it.

A ``ConversationState`` is a value; a ``SessionManager`` owns many of them.
Neither touches the other's private attributes: a state talks to its owner only
through :class:`StateOwner` below, and the owner uses only the state's public
methods (``attach``, ``detach``, ``to_dict``, ``load_document``, ``rebase``,
``unload``, ``info``) and its save bookkeeping attributes (``revision``,
``base_total``, ``lineage``, ``pending``).

The lock story, in one place. A standalone state guards itself with its own
``RLock``. ``state.attach(owner)`` makes it share ``owner.lock`` instead (one
lock per manager: a state's content and the manager's books change together and
there is no lock order to get wrong); ``state.detach()`` gives it a fresh one.
Code that takes ``state.lock`` re-checks after acquiring it, since attach and
detach may swap it. Every read or change of a state's content, and every change
of the manager's books, happens under that lock. Store I/O, summarizers and
model calls never run while it is held: the manager serialises its store
writes with a second lock (``_io_lock``) that is never taken while holding the
first. Each callback below says whether it is called with the lock held.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

Message = dict[str, Any]
S = TypeVar("S", contravariant=True)  # the state type (generic, so no import of state.py)


class StateOwner(Protocol[S]):
    """What a state asks of the manager that owns it."""

    lock: threading.RLock  # shared by the owner and all its states

    def resized(self, state: S, delta: int, size: int) -> None:
        """The state's byte estimate changed by ``delta`` to ``size`` (lock held)."""

    def committed(self, state: S, messages: Sequence[Message]) -> None:
        """``messages`` were appended to the state (lock held): the one place a
        finished message is committed, for a durable per-turn log."""

    def settle(self) -> None:
        """A public operation finished: apply the budgets (lock not held)."""

    def restore(self, state: S) -> None:
        """The state is hollow and being used: fill it from the store (lock not held)."""

    def count(self, counter: str, amount: int) -> None:
        """Add ``amount`` to one of the owner's counters (lock not held)."""


def check_session_id(session_id: object) -> str:
    """A session id every store can key by: a non-empty str of valid UTF-8."""
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session_id must be a non-empty str")
    if not session_id.isascii():
        try:
            session_id.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"session_id {session_id!r} holds a lone surrogate, which stores cannot "
                "write as UTF-8; use printable text"
            ) from None
    return session_id
