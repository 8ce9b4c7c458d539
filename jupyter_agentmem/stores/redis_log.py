"""The turn log half of :class:`~jupyter_agentmem.stores.redis.RedisStore` (its module
doc, "Turn log", has the layout): append, read, and compaction after a save.

A mixin only to keep each module to one job; it holds no state of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import codec
from .base import LogEntry
from .redis_client import id_bytes

if TYPE_CHECKING:
    from jupyter_agentmem.errors import StoreCorruptError

__all__ = ["RedisTurnLog"]


class RedisTurnLog:
    """``append_log``, ``read_log``, ``read_logs`` of the store protocol, on Redis LISTs."""

    if TYPE_CHECKING:  # provided by RedisStore
        _client: Any
        cluster: bool
        _logs: bytes
        _index: bytes
        _ttl_ms: int
        _append_script: Any
        _compact_script: Any
        _index_script: Any

        def doc_key(self, session_id: str) -> bytes: ...
        def _io(
            self, doing: str, session_id: str | None = None
        ) -> AbstractContextManager[None]: ...
        def _foreign(self, session_id: str, why: str = ...) -> StoreCorruptError: ...

    def _log_key(self, session_id: str) -> bytes:
        return self._logs + b"{" + id_bytes(session_id) + b"}"

    def _compact(self, saved: list[tuple[str, Any]]) -> None:
        """Drop the log entries each saved document covers (best effort, see the module doc)."""
        todo = [(sid, marks) for sid, marks in saved if isinstance(marks, dict) and marks]
        if not todo:
            return
        with self._io("compacting the turn log"):
            pipe = None if self.cluster else self._client.pipeline(transaction=False)
            for sid, marks in todo:  # a Cluster pipeline cannot load scripts: one call each
                keys, args = [self._log_key(sid)], [json.dumps(marks)]
                self._compact_script(keys=keys, args=args, client=pipe or self._client)
            if pipe is not None:
                pipe.execute()

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        """Append turn-log entries: one script per session (one round trip on a standalone
        server; in Cluster mode the ids are indexed first, then one call per session)."""
        grouped: dict[str, list[bytes]] = {}
        for sid, entry in items:
            grouped.setdefault(sid, []).append(codec.encode_log(entry))
        with self._io("appending to the turn log"):
            if self.cluster:
                ids = [id_bytes(sid) for sid in grouped]
                self._index_script(keys=[self._index], args=["add", self._ttl_ms, *ids])
            pipe = None if self.cluster else self._client.pipeline(transaction=False)
            for sid, lines in grouped.items():
                keys = [self._log_key(sid), self.doc_key(sid)]
                if not self.cluster:
                    keys.append(self._index)
                args: list[bytes | int] = [id_bytes(sid), self._ttl_ms, *lines]
                self._append_script(keys=keys, args=args, client=pipe or self._client)
            if pipe is not None:
                pipe.execute()

    def read_log(self, session_id: str) -> list[LogEntry]:
        with self._io("reading the turn log", session_id):
            raw: list[Any] = self._client.lrange(self._log_key(session_id), 0, -1)
        return self._log_entries(session_id, raw)

    def read_logs(self, session_ids: Iterable[str]) -> dict[str, list[LogEntry]]:
        """``read_log`` of many sessions (those with entries) in one pipelined round trip."""
        wanted = list(dict.fromkeys(session_ids))
        with self._io("reading the turn log"):
            pipe = self._client.pipeline(transaction=False)
            for session_id in wanted:
                pipe.lrange(self._log_key(session_id), 0, -1)
            replies: list[Any] = pipe.execute()
        return {
            sid: self._log_entries(sid, raw)
            for sid, raw in zip(wanted, replies, strict=True)
            if raw
        }

    def _log_entries(self, session_id: str, raw: list[Any]) -> list[LogEntry]:
        try:
            return codec.decode_log(raw)
        except ValueError as exc:
            raise self._foreign(session_id, f"a damaged turn log ({exc})") from exc
