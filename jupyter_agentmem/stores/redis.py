"""Redis store: evicted sessions shared by every kernel or server that points at one Redis.

Layout under ``prefix`` (default ``agentmem:``). ``{prefix}d:{<id>}`` is a HASH of
``rev`` (the stored revision) and ``data`` (format in :mod:`.codec`). The
id sits in a ``{...}`` hash tag, so every key of one session (also the turn log
and run keys beside it) lives in one Redis Cluster slot. ``{prefix}ids`` is a
sorted set of the ids scored by expiry time in ms (``+inf`` without TTL):
``list_ids`` and ``count`` read it, never a glob pattern or a cross-slot
command, so ids with quotes, slashes, ``*`` or ``:`` are safe, and ``count``
stays exact and O(log n) under TTL.

Concurrency (no lost updates between processes): every write is one Lua script,
run atomically by Redis. It checks the revision rule of ``stores/base.py``
(``r`` replaces ``r - 1``, or nothing when ``r == 1``), then writes value and
expiry (and, on a standalone server, the index entry) together, or writes
nothing and :class:`SessionConflictError` is raised. When two kernels continue
one session, the second to save gets the conflict; its SessionManager loads the
stored copy, appends its own new turns after the other kernel's
(``state.merge_documents``) and saves again. A save whose reply was lost
(timeout) but which reached Redis is accepted when retried (same revision, same
bytes) instead of being merged, which would duplicate turns. A document without
``"revision"`` is written unconditionally; ``load`` always reports the stored
revision, and :meth:`RedisStore.revision` reads it alone in one round trip.

Redis Cluster (``redis+cluster://host:port``, any node; an explicit scheme, not
auto-detection, so a URL says what it gets): the index is one key in its own
slot, so it is updated by its own script *before* the document (an id is never
saved without being indexed; a save that then fails leaves an index entry that
``list_ids`` prunes). Listing checks documents with ``EXISTS`` pipelined per
node. One race remains: a session's *first* save running exactly while
``list_ids`` checks it (indexed, document not yet written) can be pruned and
stays unlisted (still loadable) until its next save. ``save_many`` is
all-or-nothing per session, not per batch.

Upgrading from version 1 of the layout (``{prefix}s:<id>``, no hash tag): the
first standalone store opened on a prefix renames those keys once (``SCAN`` and
an atomic rename script; then the hash ``{prefix}scheme`` says ``version 2``).
Upgrade every kernel together: a version-1 kernel writing after that is not seen.

TTL: with ``ttl`` seconds, a session neither saved nor loaded for that long is
dropped by Redis; expired ids leave the index when ``count``/``list_ids`` run.

Faults: an unreachable server raises :class:`StoreError` at construction (PING
within ``connect_timeout``); every operation is bounded by ``socket_timeout``
with no client-side retry, so a dead or frozen Redis costs one timeout, never a
hang, while the manager keeps sessions in memory. A value under our prefix that
we did not write raises :class:`StoreCorruptError` for that id only. Messages
mask any password in the URL.

Turn log (``stores/base.py``): ``{prefix}l:{<id>}`` is a LIST of entries
(:mod:`.codec`), appended by one script per session (which
also pushes the TTL and, on a standalone server, indexes the id; in Cluster mode
the index is updated first by its own script). It shares the document's hash
tag, so the log, its compaction script and the document live in one slot.
Saving a document with ``log_marks`` then runs a one-key script that drops the
entries the document covers; that step need not be atomic with the save, since
a restore skips covered entries anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError

from . import codec
from . import redis_scripts as scripts
from .base import LogEntry, SessionData
from .redis_client import cluster_url, connect, glob_escape, id_bytes, public_url
from .redis_log import RedisTurnLog

try:
    from redis.exceptions import RedisError, ResponseError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RedisStore needs redis-py: pip install 'jupyter-agentmem[redis]'") from exc

__all__ = ["RedisStore", "cluster_url", "public_url"]

_CHUNK = 1000  # ids checked per script run in list_ids, so Redis is never blocked long
_SCHEME = b"2"  # version of the key layout: field 'version' of the hash {prefix}scheme


class RedisStore(RedisTurnLog):
    """Redis-backed :class:`~jupyter_agentmem.stores.base.SessionStore`.

    ``redis+cluster://host:port`` (any node) selects Redis Cluster mode. Pass
    ``client`` to reuse a configured ``redis.Redis`` or ``RedisCluster`` (TLS,
    Sentinel ...); it must not decode responses, and the caller keeps ownership
    of it (``close`` then leaves it open).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "agentmem:",
        ttl: float | None = None,
        compress_threshold: int = 4096,
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        client: Any = None,
    ) -> None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive seconds, or None to keep sessions forever")
        if compress_threshold < 0:
            raise ValueError("compress_threshold must be >= 0 bytes")
        self.url = public_url(url)
        self.prefix = prefix
        self.ttl = ttl
        self.compress_threshold = compress_threshold
        self._ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        self._docs = prefix.encode() + b"d:"
        self._logs = prefix.encode() + b"l:"
        self._index = prefix.encode() + b"ids"
        self._closed = False
        self._owns_client = client is None
        if client is None:
            client = connect(url, socket_timeout, connect_timeout)
        elif client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self._client = client
        self.cluster = type(client).__name__ == "RedisCluster"
        try:
            client.ping()
        except RedisError as exc:
            self.close()
            raise StoreError(
                f"cannot reach Redis at {self.url} ({type(exc).__name__}: {exc}); start "
                "redis-server or fix the store URL (c.AgentMem.store_url)"
            ) from exc
        self._save_script = client.register_script(scripts.SAVE)
        self._load_script = client.register_script(scripts.LOAD_TOUCH)
        self._index_script = client.register_script(scripts.INDEX)
        self._prune_script = client.register_script(scripts.PRUNE)
        self._append_script = client.register_script(scripts.APPEND)
        self._compact_script = client.register_script(scripts.COMPACT)
        if not self.cluster:
            self._migrate_v1()

    def doc_key(self, session_id: str) -> bytes:
        """``{prefix}d:{<id>}``: the ``{...}`` hash tag keeps a session's keys in one slot."""
        return self._docs + b"{" + id_bytes(session_id) + b"}"

    def _migrate_v1(self) -> None:
        """Rename version-1 keys (``{prefix}s:<id>``, standalone only) once per prefix."""
        marker = self.prefix.encode() + b"scheme"
        with self._io("upgrading the key layout"):
            if self._client.hget(marker, "version") == _SCHEME:
                return
            migrate = self._client.register_script(scripts.MIGRATE)
            old = self.prefix.encode() + b"s:"
            for key in self._client.scan_iter(match=glob_escape(old) + b"*", count=500):
                ident = key[len(old) :]
                migrate(keys=[key, self._docs + b"{" + ident + b"}"])
            self._client.hset(marker, "version", _SCHEME)

    # ------------------------------------------------------------- helpers
    @contextmanager
    def _io(self, doing: str, session_id: str | None = None) -> Iterator[None]:
        """Turn redis-py errors into ours; bounded by socket_timeout, never retried."""
        if self._closed:
            raise StoreError(f"the session store {self.url} is closed")
        try:
            yield
        except ResponseError as exc:
            if session_id is not None and "WRONGTYPE" in str(exc):
                raise self._foreign(session_id) from exc
            raise StoreError(f"Redis at {self.url} refused {doing}: {exc}") from exc
        except RedisError as exc:  # ConnectionError, TimeoutError, authentication ...
            raise StoreError(
                f"Redis at {self.url} failed while {doing} ({type(exc).__name__}: {exc}); "
                "check that redis-server is running and reachable"
            ) from exc

    def _foreign(
        self, session_id: str, why: str = "a value jupyter-agentmem did not write"
    ) -> StoreCorruptError:
        return StoreCorruptError(
            f"session {session_id!r} in Redis at {self.url} holds {why}; it was left "
            "untouched (other sessions are unaffected): delete it or use another prefix"
        )

    def _encode(self, session_id: str, data: SessionData) -> bytes:
        try:
            return codec.encode(data, self.compress_threshold)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"session {session_id!r} is not a JSON document: {exc}") from exc

    def _decode(self, session_id: str, rev: Any, blob: bytes) -> SessionData:
        try:
            data, revision = codec.decode(rev, blob)
        except ValueError as exc:
            raise self._foreign(session_id, f"a damaged value ({exc})") from exc
        if not isinstance(data, dict):
            raise self._foreign(session_id, "a JSON value that is not a session document")
        data["revision"] = revision
        return data

    # ------------------------------------------------------------ protocol
    def save(self, session_id: str, data: SessionData) -> None:
        self.save_many([(session_id, data)])

    def save_many(self, items: Iterable[tuple[str, SessionData]]) -> int:
        """Save several sessions: all or nothing in one script run on a standalone server.

        Redis is busy while the script runs, so pass hundreds, not millions. In
        Cluster mode sessions live in different slots: the ids are indexed first
        (one script), then each session is saved by its own script in order, and a
        conflict stops the batch at that session (the ones before it are saved).
        """
        batch = []
        items = list(items)
        for session_id, data in items:
            revision = data.get("revision")
            expected = "" if revision is None else str(int(revision))
            batch.append((session_id, expected, self._encode(session_id, data)))
        if not batch:
            return 0
        if not self.cluster:
            keys = [*(self.doc_key(sid) for sid, _, _ in batch), self._index]
            self._run_save(batch, keys, b"")
            self._compact([(sid, data.get("log_marks")) for sid, data in items])
            return len(batch)
        with self._io("indexing sessions"):
            ids = [id_bytes(sid) for sid, _, _ in batch]
            score = self._index_script(keys=[self._index], args=["add", self._ttl_ms, *ids])
        for item, (_, data) in zip(batch, items, strict=True):
            self._run_save([item], [self.doc_key(item[0])], score)
            self._compact([(item[0], data.get("log_marks"))])
        return len(batch)

    def _run_save(self, batch: list[tuple[str, str, bytes]], keys: list[bytes], at: bytes) -> None:
        args: list[bytes | str | int] = [self._ttl_ms, at]
        for session_id, expected, payload in batch:
            args += [id_bytes(session_id), expected, payload]
        with self._io("saving sessions"):
            status, index, stored = self._save_script(keys=keys, args=args)
        if status == 1:
            return
        session_id, expected, _ = batch[int(index) - 1]
        if status == 0:
            raise SessionConflictError(
                f"session {session_id!r} is at revision {stored} in Redis at {self.url}; "
                f"this write expected {int(expected) - 1} (another kernel changed it)"
            )
        raise self._foreign(session_id)

    def load(self, session_id: str) -> SessionData | None:
        key = self.doc_key(session_id)
        with self._io("loading a session", session_id):
            if self._ttl_ms:
                ident = id_bytes(session_id)
                keys = [key] if self.cluster else [key, self._index]
                rev, blob, at = self._load_script(keys=keys, args=[ident, self._ttl_ms])
                if self.cluster and blob is not None:  # only ids still indexed (XX)
                    self._client.zadd(self._index, {ident: at}, xx=True)
            else:
                rev, blob = self._client.hmget(key, ["rev", "data"])
        if blob is None:
            return None
        return self._decode(session_id, rev, blob)

    def _queue_load(self, pipe: Any, session_id: str) -> None:
        """Queue one document read (and its TTL touch) on a standalone pipeline; the
        reply starts with ``rev, blob``."""
        key = self.doc_key(session_id)
        if self._ttl_ms:
            args: list[bytes | int] = [id_bytes(session_id), self._ttl_ms]
            self._load_script(keys=[key, self._index], args=args, client=pipe)
        else:
            pipe.hmget(key, ["rev", "data"])

    def read_log_and_load(self, session_id: str) -> tuple[list[LogEntry], SessionData | None]:
        """``read_log`` then ``load`` in one pipelined round trip (a restore with the turn
        log on paid two: most of its time on a loopback Redis). Redis runs the two in
        order, so the log is read first, as ``replay.load_with_log`` needs."""
        if self.cluster:  # a Cluster pipeline cannot run the TTL script: two calls
            return self.read_log(session_id), self.load(session_id)
        with self._io("loading a session", session_id):
            pipe = self._client.pipeline(transaction=False)
            pipe.lrange(self._log_key(session_id), 0, -1)
            self._queue_load(pipe, session_id)
            raw, reply = pipe.execute()
        rev, blob = reply[0], reply[1]
        doc = None if blob is None else self._decode(session_id, rev, blob)
        return self._log_entries(session_id, raw), doc

    def revision(self, session_id: str) -> int | None:
        """The stored revision of one session (one HGET, no document transfer), or None.

        Cheap enough to ask before every turn: a manager holding the session in
        memory compares it with its own and reloads when another instance wrote.
        """
        with self._io("reading a revision", session_id):
            rev = self._client.hget(self.doc_key(session_id), "rev")
        if rev is None:
            return None
        try:
            return int(rev)
        except ValueError as exc:
            raise self._foreign(session_id, f"a damaged revision ({rev!r})") from exc

    def load_many(self, session_ids: Iterable[str]) -> dict[str, SessionData]:
        """The documents of the ids that exist, in one pipelined round trip (no
        transaction: each read is atomic on its own, like ``load``)."""
        wanted = list(dict.fromkeys(session_ids))
        if not wanted:
            return {}
        if self.cluster:  # a Cluster pipeline cannot run scripts: one load each
            loaded = {sid: self.load(sid) for sid in wanted}
            return {sid: doc for sid, doc in loaded.items() if doc is not None}
        with self._io("loading sessions"):
            pipe = self._client.pipeline(transaction=False)
            for session_id in wanted:
                self._queue_load(pipe, session_id)
            replies = pipe.execute(raise_on_error=False)
        found: dict[str, SessionData] = {}
        for session_id, reply in zip(wanted, replies, strict=True):
            if isinstance(reply, ResponseError) and "WRONGTYPE" in str(reply):
                raise self._foreign(session_id) from reply
            if isinstance(reply, Exception):
                raise StoreError(f"Redis at {self.url} refused loading sessions: {reply}")
            rev, blob = reply[0], reply[1]  # the TTL script also returns the expiry
            if blob is not None:
                found[session_id] = self._decode(session_id, rev, blob)
        return found

    def delete(self, session_id: str) -> bool:
        ident = id_bytes(session_id)
        with self._io("deleting a session"):
            if self.cluster:  # two slots: the document first, a stale index entry is pruned
                removed = self._client.delete(self.doc_key(session_id), self._log_key(session_id))
                self._client.zrem(self._index, ident)
            else:
                pipe = self._client.pipeline(transaction=True)
                pipe.delete(self.doc_key(session_id), self._log_key(session_id))
                pipe.zrem(self._index, ident)
                removed, _ = pipe.execute()
        return bool(removed)

    def list_ids(self) -> list[str]:
        """Every persisted id, soonest to expire first (by id without TTL)."""
        live: list[bytes] = []
        with self._io("listing sessions"):
            ids: list[bytes] = self._index_script(keys=[self._index], args=["list"])
            for start in range(0, len(ids), _CHUNK):
                live += self._prune(ids[start : start + _CHUNK])
        return [ident.decode("utf-8", "surrogatepass") for ident in live]

    def _prune(self, chunk: list[bytes]) -> list[bytes]:
        """The ids of ``chunk`` whose document exists; unindex the others."""
        docs = [self._docs + b"{" + ident + b"}" for ident in chunk]
        logs = [self._logs + b"{" + ident + b"}" for ident in chunk]
        if not self.cluster:
            keys = [self._index, *docs, *logs]
            result: list[bytes] = self._prune_script(keys=keys, args=chunk)
            return result
        pipe = self._client.pipeline(transaction=False)  # grouped by node: one trip each
        for doc, log in zip(docs, logs, strict=True):
            pipe.exists(doc, log)  # one slot: a document or a turn log
        found = pipe.execute()
        gone = [ident for ident, hit in zip(chunk, found, strict=True) if not hit]
        if gone:
            self._client.zrem(self._index, *gone)
        return [ident for ident, hit in zip(chunk, found, strict=True) if hit]

    def count(self) -> int:
        """Number of persisted sessions, expired ones excluded (O(log n))."""
        with self._io("counting sessions"):
            return int(self._index_script(keys=[self._index], args=["count"]))

    def close(self) -> None:
        """Disconnect (unless the client was passed in); idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_client:
                self._client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"
