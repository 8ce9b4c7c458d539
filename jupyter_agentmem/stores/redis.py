"""Redis store: evicted sessions shared by every kernel that points at one server.

Layout under ``prefix`` (default ``agentmem:``). ``{prefix}s:{id}`` is a HASH of
``rev`` (the stored revision) and ``data``: one format byte (``j`` JSON, ``z``
zlib-compressed JSON) then the UTF-8 bytes, so values describe themselves and
nothing is ever pickled. ``{prefix}ids`` is a sorted set of the ids scored by
expiry time in ms (``+inf`` without TTL): ``list_ids`` and ``count`` read it,
never a glob pattern, so ids with quotes, slashes, ``*`` or ``:`` are safe, and
``count`` stays exact and O(log n) under TTL.

Concurrency (no lost updates between processes): every write is one Lua script,
run atomically by Redis. It checks the revision rule of ``stores/base.py``
(``r`` replaces ``r - 1``, or nothing when ``r == 1``), then writes value, expiry
and index entry together, or writes nothing and :class:`SessionConflictError`
is raised. When two kernels continue one session, the second to save gets the
conflict; its SessionManager loads the stored copy, appends its own new turns
after the other kernel's (``state.merge_documents``) and saves again. A save
whose reply was lost (timeout) but which reached Redis is accepted when retried
(same revision, same bytes) instead of being merged, which would duplicate
turns. A document without ``"revision"`` is written unconditionally; ``load``
always reports the stored revision.

TTL: with ``ttl`` seconds, a session neither saved nor loaded for that long is
dropped by Redis; expired ids leave the index when ``count``/``list_ids`` run.

Faults: an unreachable server raises :class:`StoreError` at construction (PING
within ``connect_timeout``); every operation is bounded by ``socket_timeout``
with no client-side retry, so a dead or frozen Redis costs one timeout, never a
hang, while the manager keeps sessions in memory. A value under our prefix that
we did not write raises :class:`StoreCorruptError` for that id only. Messages
mask any password in the URL. Standalone or Sentinel Redis, not Redis Cluster
(scripts touch several keys).

Turn log (``stores/base.py``): ``{prefix}l:{{id}}`` is a LIST of entries
``writer TAB seq TAB message-JSON``, appended by one script per session (which
also indexes the id and pushes the TTL). The session id sits in a ``{...}`` hash
tag so the log key and its compaction script already live in one Cluster slot.
Saving a document with ``log_marks`` then runs a one-key script that drops the
entries the document covers; that step need not be atomic with the save, since
a restore skips covered entries anyway.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jupyter_agentmem.errors import SessionConflictError, StoreCorruptError, StoreError

from .base import LogEntry, SessionData

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError, ResponseError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RedisStore needs redis-py: pip install 'jupyter-agentmem[redis]'") from exc

_JSON, _ZLIB = b"j", b"z"
_ZLIB_LEVEL = 6
_CHUNK = 1000  # ids checked per script run in list_ids, so Redis is never blocked long

_NOW = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
"""

# KEYS: index, key_1..key_n. ARGV: ttl_ms, then per item id, expected revision ('' = none), payload.
# Returns {1, n, 0} on success, {0, i, stored_rev} on a conflict, {-1, i, 0} for a foreign value.
_SAVE = """
local ttl = tonumber(ARGV[1])
local revs, seen = {}, {}
for i = 1, #KEYS - 1 do
  local key = KEYS[i + 1]
  local cur = seen[key]
  if cur == nil then
    local r = redis.pcall('HGET', key, 'rev')
    if type(r) == 'table' and r.err then return {-1, i, 0} end
    cur = tonumber(r)
    if cur == nil then
      if redis.call('EXISTS', key) == 1 then return {-1, i, 0} end
      cur = 0
    end
  end
  local want = ARGV[3 * i]
  if want == '' or tonumber(want) == cur + 1 then
    revs[i] = cur + 1
  elseif tonumber(want) == cur and seen[key] == nil
      and redis.call('HGET', key, 'data') == ARGV[3 * i + 1] then
    revs[i] = cur  -- the retry of a write that already landed
  else
    return {0, i, cur}
  end
  seen[key] = revs[i]
end
local score = '+inf'
if ttl > 0 then score = now_ms() + ttl end
for i = 1, #KEYS - 1 do
  local key = KEYS[i + 1]
  redis.call('HSET', key, 'rev', revs[i], 'data', ARGV[3 * i + 1])
  if ttl > 0 then redis.call('PEXPIREAT', key, score) else redis.call('PERSIST', key) end
  redis.call('ZADD', KEYS[1], score, ARGV[3 * i - 1])
end
return {1, #KEYS - 1, 0}
"""

# KEYS: key, index. ARGV: id, ttl_ms. A read that also pushes the expiry back.
_LOAD_TOUCH = """
local v = redis.call('HMGET', KEYS[1], 'rev', 'data')
if v[2] then
  local at = now_ms() + tonumber(ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('ZADD', KEYS[2], at, ARGV[1])
end
return v
"""

# KEYS: index. ARGV: 'count' or 'list'. Drops expired ids first.
_INDEX = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
if ARGV[1] == 'count' then return redis.call('ZCARD', KEYS[1]) end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: index, key_1..key_n, log_1..log_n. ARGV: id_1..id_n. Returns the live ids (a
# document or a log), unindexes the others (deleted outside this store, or evicted by maxmemory).
_PRUNE = """
local live, n = {}, #ARGV
for i = 1, n do
  if redis.call('EXISTS', KEYS[i + 1], KEYS[n + i + 1]) > 0 then live[#live + 1] = ARGV[i]
  else redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return live
"""

# KEYS: log, index, document. ARGV: id, ttl_ms, entry_1..entry_n.
_APPEND = """
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
local ttl = tonumber(ARGV[2])
local score = '+inf'
if ttl > 0 then
  score = now_ms() + ttl
  redis.call('PEXPIREAT', KEYS[1], score)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIREAT', KEYS[3], score) end
end
redis.call('ZADD', KEYS[2], score, ARGV[1])
return #ARGV - 2
"""

# KEYS: log. ARGV: JSON {writer: seq}. Drops the entries at or below their writer's mark.
_COMPACT = """
local marks = cjson.decode(ARGV[1])
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local kept = {}
for _, e in ipairs(items) do
  local w, j = string.match(e, '^([^\t]*)\t(%d+)\t')
  if w == nil or marks[w] == nil or tonumber(j) > tonumber(marks[w]) then kept[#kept + 1] = e end
end
if #kept == #items then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
for _, e in ipairs(kept) do redis.call('RPUSH', KEYS[1], e) end
if ttl > 0 and #kept > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return #items - #kept
"""


def public_url(url: str) -> str:
    """``url`` with any password (in the netloc or a ``password=`` query) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _id_bytes(session_id: str) -> bytes:
    return session_id.encode("utf-8", "surrogatepass")  # any Python str round-trips


class RedisStore:
    """Redis-backed :class:`~jupyter_agentmem.stores.base.SessionStore`.

    Pass ``client`` to reuse a configured ``redis.Redis`` (TLS, Sentinel ...);
    it must not decode responses, and the caller keeps ownership of it
    (``close`` then leaves it open).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "agentmem:",
        ttl: float | None = None,
        compress_threshold: int = 4096,
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        client: redis.Redis | None = None,
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
        self._keys = prefix.encode() + b"s:"
        self._logs = prefix.encode() + b"l:"
        self._index = prefix.encode() + b"ids"
        self._closed = False
        self._owns_client = client is None
        if client is None:
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0),  # a retried write could land twice; fail fast
            )
        elif client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self._client = client
        try:
            client.ping()
        except RedisError as exc:
            self.close()
            raise StoreError(
                f"cannot reach Redis at {self.url} ({type(exc).__name__}: {exc}); start "
                "redis-server or fix the store URL (c.AgentMem.store_url)"
            ) from exc
        self._save_script = client.register_script(_NOW + _SAVE)
        self._load_script = client.register_script(_NOW + _LOAD_TOUCH)
        self._index_script = client.register_script(_NOW + _INDEX)
        self._prune_script = client.register_script(_PRUNE)
        self._append_script = client.register_script(_NOW + _APPEND)
        self._compact_script = client.register_script(_COMPACT)

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

    def _log_key(self, session_id: str) -> bytes:
        return self._logs + b"{" + _id_bytes(session_id) + b"}"

    def _foreign(
        self, session_id: str, why: str = "a value jupyter-agentmem did not write"
    ) -> StoreCorruptError:
        return StoreCorruptError(
            f"session {session_id!r} in Redis at {self.url} holds {why}; it was left "
            "untouched (other sessions are unaffected): delete it or use another prefix"
        )

    def _encode(self, session_id: str, data: SessionData) -> bytes:
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"session {session_id!r} is not a JSON document: {exc}") from exc
        raw = text.encode("utf-8", "surrogatepass")
        if len(raw) > self.compress_threshold:
            packed = zlib.compress(raw, _ZLIB_LEVEL)
            if len(packed) < len(raw):
                return _ZLIB + packed
        return _JSON + raw

    def _decode(self, session_id: str, rev: Any, blob: bytes) -> SessionData:
        try:
            head, body = blob[:1], blob[1:]
            if head == _ZLIB:
                body = zlib.decompress(body)
            elif head != _JSON:
                raise ValueError(f"unknown format byte {head!r}")
            data = json.loads(body.decode("utf-8", "surrogatepass"))
            revision = int(rev)
        except (TypeError, ValueError, zlib.error) as exc:  # includes JSON and UTF-8 errors
            raise self._foreign(session_id, f"a damaged value ({exc})") from exc
        if not isinstance(data, dict):
            raise self._foreign(session_id, "a JSON value that is not a session document")
        data["revision"] = revision
        return data

    # ------------------------------------------------------------ protocol
    def save(self, session_id: str, data: SessionData) -> None:
        self.save_many([(session_id, data)])

    def save_many(self, items: Iterable[tuple[str, SessionData]]) -> int:
        """Save several sessions in one script run: all or nothing, like SQLite.

        Redis is busy while the script runs, so pass hundreds, not millions.
        """
        batch = []
        items_list = list(items)
        for session_id, data in items_list:
            revision = data.get("revision")
            expected = "" if revision is None else str(int(revision))
            batch.append((session_id, expected, self._encode(session_id, data)))
        if not batch:
            return 0
        keys = [self._index, *(self._keys + _id_bytes(sid) for sid, _, _ in batch)]
        args: list[bytes | str | int] = [self._ttl_ms]
        for session_id, expected, payload in batch:
            args += [_id_bytes(session_id), expected, payload]
        with self._io("saving sessions"):
            status, index, stored = self._save_script(keys=keys, args=args)
        if status == 1:
            self._compact([(sid, data.get("log_marks")) for sid, data in items_list])
            return len(batch)
        session_id, expected, _ = batch[int(index) - 1]
        if status == 0:
            raise SessionConflictError(
                f"session {session_id!r} is at revision {stored} in Redis at {self.url}; "
                f"this write expected {int(expected) - 1} (another kernel changed it)"
            )
        raise self._foreign(session_id)

    def _compact(self, saved: list[tuple[str, Any]]) -> None:
        """Drop the log entries each saved document covers (best effort, see the module doc)."""
        todo = [(sid, marks) for sid, marks in saved if isinstance(marks, dict) and marks]
        if not todo:
            return
        with self._io("compacting the turn log"):
            pipe = self._client.pipeline(transaction=False)
            for sid, marks in todo:
                self._compact_script(
                    keys=[self._log_key(sid)], args=[json.dumps(marks)], client=pipe
                )
            pipe.execute()

    def append_log(self, items: list[tuple[str, LogEntry]]) -> None:
        """Append turn-log entries: one script per session, all in one round trip."""
        grouped: dict[str, list[bytes]] = {}
        for sid, (writer, seq, message) in items:
            line = f"{writer}\t{int(seq)}\t{message}".encode("utf-8", "surrogatepass")
            grouped.setdefault(sid, []).append(line)
        with self._io("appending to the turn log"):
            pipe = self._client.pipeline(transaction=False)
            for sid, lines in grouped.items():
                keys = [self._log_key(sid), self._index, self._keys + _id_bytes(sid)]
                args: list[bytes | int] = [_id_bytes(sid), self._ttl_ms, *lines]
                self._append_script(keys=keys, args=args, client=pipe)
            pipe.execute()

    def read_log(self, session_id: str) -> list[LogEntry]:
        with self._io("reading the turn log", session_id):
            raw: list[Any] = self._client.lrange(self._log_key(session_id), 0, -1)
        entries: list[LogEntry] = []
        for line in raw:
            try:
                writer, seq, message = line.decode("utf-8", "surrogatepass").split("\t", 2)
                entries.append((writer, int(seq), message))
            except ValueError as exc:
                raise self._foreign(session_id, f"a damaged turn log ({exc})") from exc
        return entries

    def load(self, session_id: str) -> SessionData | None:
        key = self._keys + _id_bytes(session_id)
        with self._io("loading a session", session_id):
            if self._ttl_ms:
                args: list[bytes | int] = [_id_bytes(session_id), self._ttl_ms]
                rev, blob = self._load_script(keys=[key, self._index], args=args)
            else:
                rev, blob = self._client.hmget(key, ["rev", "data"])
        if blob is None:
            return None
        return self._decode(session_id, rev, blob)

    def delete(self, session_id: str) -> bool:
        ident = _id_bytes(session_id)
        with self._io("deleting a session"):
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys + ident, self._log_key(session_id))
            pipe.zrem(self._index, ident)
            removed, _ = pipe.execute()
        return bool(removed)

    def list_ids(self) -> list[str]:
        """Every persisted id, soonest to expire first (by id without TTL)."""
        live: list[Any] = []
        with self._io("listing sessions"):
            ids: list[bytes] = self._index_script(keys=[self._index], args=["list"])
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                names = [ident.decode("utf-8", "surrogatepass") for ident in chunk]
                keys = [
                    self._index,
                    *(self._keys + ident for ident in chunk),
                    *(self._log_key(name) for name in names),
                ]
                live += self._prune_script(keys=keys, args=chunk)
        return [ident.decode("utf-8", "surrogatepass") for ident in live]

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
