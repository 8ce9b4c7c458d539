"""Durable turns: every finished message reaches the store within moments, not at eviction.

Why: the OOM killer sends SIGKILL, so ``atexit`` and eviction are not enough; a
kernel killed right after a cell finished must lose nothing of that turn.

How (the format is in ``stores/base.py``, "turn log"):

- ``record`` runs inside ``add_message`` (state lock held). It only numbers the
  messages (``state.log_marks[writer]``) and appends them to a bounded queue:
  O(1), no I/O, no JSON, so streaming and the cell never wait for the disk.
- One daemon thread (the writer) takes everything queued and appends it to the
  store in one transaction: a group commit. A message is committed as soon as
  the writer is free, typically well under a millisecond later on SQLite and
  always within ``window`` (200 ms) unless the store itself is slower than that
  (then its own timeout bounds it). ``sync`` waits for that point; the
  ``%%agent`` cell calls it so that a finished cell is on disk.
- Backpressure: the queue holds at most ``capacity`` messages. When it is full
  (the store is down or very slow) the message is not queued, the session is
  marked *unlogged* and saved whole by the writer as soon as it can: nothing is
  lost while the kernel lives, and the log never has a hole in the middle.
- Compaction: saving a session whole records ``log_marks`` in the document and
  drops the entries it covers; the writer also saves a session whole once it
  has ``checkpoint_every`` entries in the log, so the on-disk log stays short.
- Restore (:mod:`.replay`): the stored document plus the entries above its
  marks, in log order.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from jupyter_agentmem.stores.base import LogEntry, LogStore, SessionStore
from jupyter_agentmem.stores.codec import storable_json

from .replay import supports_log

if TYPE_CHECKING:
    from .state import ConversationState, Message


class _Owner(Protocol):
    """What the writer needs from its SessionManager: whole saves (checkpoints)."""

    def flush(self, ids: Iterable[str] | None = None) -> int: ...


log = logging.getLogger(__name__)

_CHUNK_CHARS = 1 << 20  # JSON characters per log transaction (bounds the writer's memory)
_POLL = 1.0  # seconds between checks, when idle, that the manager still exists


def new_writer_id() -> str:
    """A writer id that sorts by start time (so the newest marks are the ones kept)."""
    return f"{time.time_ns():016x}-{os.getpid():x}-{secrets.token_hex(3)}"


class Journal:
    """The background writer of one SessionManager's turn log."""

    def __init__(
        self,
        store: SessionStore,
        manager: _Owner,
        *,
        writer: str | None = None,
        capacity: int = 10_000,
        checkpoint_every: int = 256,
        window: float = 0.2,
    ) -> None:
        if not supports_log(store):
            raise TypeError(f"{store!r} keeps no turn log (append_log/read_log)")
        self.store: LogStore = store
        self.writer = writer or new_writer_id()
        self.capacity = capacity
        self.checkpoint_every = checkpoint_every
        self.window = window
        self._manager = weakref.ref(manager)  # an unclosed, dropped manager is not pinned
        self._queue: deque[tuple[str, int, Message]] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle = False  # the writer waits for messages (read and set under the lock)
        self._queued = 0  # messages ever queued
        self._done = 0  # messages committed or given up (the sync point)
        self._unlogged: set[str] = set()  # sessions to save whole (bounded by live sessions)
        self._counts: dict[str, int] = {}  # log entries per session since its last save
        self._stop = False
        self.commits = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="agentmem-journal", daemon=True
        )
        self._thread.start()

    def record(self, state: ConversationState, batch: list[Message]) -> None:
        """Number and queue freshly added messages (called with the state's lock held)."""
        sid = state.session_id
        seq = state.log_marks.get(self.writer, 0)
        with self._lock:  # the condition's lock, entered without its Python wrapper
            for message in batch:
                seq += 1
                if sid in self._unlogged or self._stop:
                    continue
                if len(self._queue) >= self.capacity:
                    self._overflow(sid)
                    continue
                self._queue.append((sid, seq, message))
                self._queued += 1
            if self._idle:  # a busy writer takes the queue when its commit is done
                self._cond.notify_all()
        state.log_marks[self.writer] = seq

    def _overflow(self, sid: str) -> None:
        if not self._unlogged:
            log.warning(
                "the turn log is %d messages behind (store slow or down); session %r is "
                "saved whole instead as soon as the store answers",
                self.capacity,
                sid,
            )
        self._unlogged.add(sid)

    def snapshotted(self, sid: str) -> None:
        """The manager took a whole-session snapshot (lock held): it covers every message
        so far, so logging may resume and the log's entry count starts again."""
        with self._cond:
            self._unlogged.discard(sid)
            self._counts.pop(sid, None)

    def forget(self, sid: str) -> None:
        """A deleted session: drop its queued entries, wait out the one in flight."""
        with self._cond:
            self._queue = deque(item for item in self._queue if item[0] != sid)
            self._unlogged.discard(sid)
            self._counts.pop(sid, None)
        self.sync(self.window)

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed; False on timeout."""
        if threading.current_thread() is self._thread:
            return True  # the writer itself (a checkpoint): everything before it is committed
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            while self._done < target and self._thread is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._done >= target

    @property
    def backlog(self) -> int:
        """Messages queued and not committed yet."""
        return len(self._queue)

    # ------------------------------------------------------------- writer side
    def _run(self) -> None:
        delay = 0.05
        batch: list[tuple[str, int, Message]] = []
        while True:
            with self._cond:
                if not self._queue and not batch and not self._stop:
                    self._idle = True
                    self._cond.wait(_POLL)
                    self._idle = False
                gone = self._manager() is None  # dropped without close: end with it
                if not self._queue and not batch and (self._stop or gone):
                    self._thread = None
                    self._cond.notify_all()
                    return
                while self._queue and len(batch) < 4096:
                    batch.append(self._queue.popleft())
            batch = self._commit(batch)
            if not batch:
                delay = 0.05
                self._checkpoint()
            elif self._stop:
                self._give_up(batch)
                return
            else:  # keep the batch (order matters) and retry; new messages queue meanwhile
                time.sleep(delay)
                delay = min(1.0, delay * 2)

    def _commit(self, batch: list[tuple[str, int, Message]]) -> list[tuple[str, int, Message]]:
        """Append ``batch`` in transactions of about ``_CHUNK_CHARS`` of JSON, so a turn with
        megabytes of messages never holds more than that twice in memory; returns what
        could not be written (kept in order, retried)."""
        done = 0
        while done < len(batch):
            items: list[tuple[str, LogEntry]] = []
            size = 0
            for sid, seq, message in batch[done:]:
                text = storable_json(message)
                items.append((sid, (self.writer, seq, text)))
                size += len(text)
                if size >= _CHUNK_CHARS:
                    break
            try:
                self.store.append_log(items)
            except Exception as exc:  # any backend failure: retried, the session stays in memory
                if self.last_error is None:
                    log.warning("could not append to the turn log (%s); retrying", exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
                return batch[done:]
            with self._cond:
                for sid, _ in items:
                    self._counts[sid] = self._counts.get(sid, 0) + 1
                self._done += len(items)
                self.commits += 1
                self.last_error = None
                self._cond.notify_all()
            done += len(items)
            del items
        return []

    def _give_up(self, batch: list[tuple[str, int, Message]]) -> None:
        """Closing with the store down: the manager's final flush saves these sessions."""
        with self._cond:
            self._done += len(batch) + len(self._queue)
            self._queue.clear()
            self._cond.notify_all()

    def _checkpoint(self) -> None:
        """Save whole the sessions whose log grew long or that could not be logged."""
        with self._cond:
            due = {sid for sid, n in self._counts.items() if n >= self.checkpoint_every}
            due |= self._unlogged
        manager = self._manager()
        if due and manager is not None and not self._stop:
            try:
                manager.flush(sorted(due))
            except Exception as exc:
                log.debug("checkpoint of %d sessions failed: %s", len(due), exc)
            with self._cond:
                for sid in due:  # gone from memory (evicted, deleted): nothing left to log
                    if self._counts.get(sid, 0) >= self.checkpoint_every:
                        self._counts.pop(sid, None)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued (one try if the store is down), then stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def abandon(self) -> None:
        """Stop at once and drop the queue, as a killed process would (for tests)."""
        with self._cond:
            self._queue.clear()
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(5.0)
