"""Run event logs in Redis Streams, so a client can resume a run on any instance.

The instance running a run appends its numbered SSE events (``id``, ``event``,
``data`` JSON) to ``{prefix}run:{<run_id>}``, a stream whose entry ids are
``0-<event id>``: a client that saw event ``n`` on instance A asks instance B for
the entries after ``0-n`` and gets exactly the missing ones, in order. The
run's owner (tenant, session) sits in ``{prefix}runmeta:{<run_id>}``, in the
same Cluster slot, so a tenant cannot read another tenant's run.

Bounds: each append trims the stream to about ``max_events`` entries (``XADD
MAXLEN ~``) and pushes both keys' expiry to ``ttl`` seconds, so a finished or
abandoned run disappears on its own; a reader asking for events already
trimmed gets :class:`RunEventsExpired`. A reader of a run whose instance died
(no ``done``/``error`` ever comes) stops after ``idle_timeout`` seconds
without a new event and receives an ``error`` event saying so.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from jupyter_agentmem.errors import StoreError

from .redis_async import redis_call, ttl_ms

TERMINAL = frozenset({"done", "error"})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One SSE event as sent: ``data`` is its JSON text."""

    id: int
    event: str
    data: str


class RunEventsExpired(StoreError):
    """The events after the client's Last-Event-ID are no longer kept (HTTP 410)."""


class EventLog(Protocol):
    """What a server needs to let any instance resume a run."""

    async def open(self, run_id: str, tenant: str, session: str) -> None: ...

    async def append(self, run_id: str, events: Sequence[LoggedEvent]) -> None: ...

    async def owner(self, run_id: str) -> tuple[str, str] | None: ...

    def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[LoggedEvent]: ...


class RedisEventLog:
    """:class:`EventLog` on Redis Streams (standalone or Cluster); ``client`` is a
    ``redis.asyncio`` client the caller owns."""

    def __init__(
        self,
        client: Any,
        prefix: str = "agentmem:",
        *,
        ttl: float = 120.0,
        max_events: int = 10_000,
        idle_timeout: float = 30.0,
        block: float = 1.0,
    ) -> None:
        if ttl <= 0 or max_events < 1 or idle_timeout <= 0:
            raise ValueError("ttl and idle_timeout must be positive, max_events at least 1")
        self._client = client
        self._prefix = prefix.encode()
        self.ttl, self.max_events, self.idle_timeout = ttl, max_events, idle_timeout
        self._block_ms = max(1, round(block * 1000))

    def stream_key(self, run_id: str) -> bytes:
        return self._prefix + b"run:{" + run_id.encode() + b"}"

    def _meta_key(self, run_id: str) -> bytes:
        return self._prefix + b"runmeta:{" + run_id.encode() + b"}"

    @property
    def _ttl_ms(self) -> int:
        return ttl_ms(self.ttl)

    async def open(self, run_id: str, tenant: str, session: str) -> None:
        """Record who owns the run (before its first event)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hset(self._meta_key(run_id), mapping={"tenant": tenant, "session": session})
        pipe.pexpire(self._meta_key(run_id), self._ttl_ms)
        await redis_call("opening a run log", pipe.execute())

    async def append(self, run_id: str, events: Sequence[LoggedEvent]) -> None:
        """Append events in order in one round trip; ids must grow."""
        if not events:
            return
        key = self.stream_key(run_id)
        pipe = self._client.pipeline(transaction=False)
        for item in events:
            fields = {"e": item.event, "d": item.data.encode("utf-8", "surrogatepass")}
            pipe.xadd(key, fields, id=f"0-{item.id}", maxlen=self.max_events, approximate=True)
        pipe.pexpire(key, self._ttl_ms)
        pipe.pexpire(self._meta_key(run_id), self._ttl_ms)
        await redis_call("appending run events", pipe.execute())

    async def owner(self, run_id: str) -> tuple[str, str] | None:
        """``(tenant, session)`` of a kept run, or None."""
        raw = await redis_call(
            "reading a run", self._client.hmget(self._meta_key(run_id), ["tenant", "session"])
        )
        if raw[0] is None:
            return None
        return bytes(raw[0]).decode(), bytes(raw[1] or b"").decode()

    async def read(self, run_id: str, after: int, block: bool = True) -> list[LoggedEvent]:
        """Events with id > ``after`` (waiting up to ``block`` seconds for the first)."""
        key = self.stream_key(run_id)
        wait = self._block_ms if block else None
        reply = await redis_call(
            "reading run events", self._client.xread({key: f"0-{after}"}, block=wait, count=500)
        )
        if not reply:
            return []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return [_decode(entry_id, fields) for entry_id, fields in entries]

    async def _check_kept(self, run_id: str, after: int) -> None:
        first = await redis_call(
            "reading run events", self._client.xrange(self.stream_key(run_id), count=1)
        )
        oldest = _decode(*first[0]).id if first else None
        if oldest is not None and oldest > after + 1:
            raise RunEventsExpired(
                f"events after id {after} of run {run_id} are no longer kept (the oldest "
                f"kept is {oldest}): read the session with GET /sessions/"
            )

    async def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[LoggedEvent]:
        """Events after ``after`` until the run's ``done``/``error``; consecutive deltas
        already waiting are merged (last id kept), like the in-process buffer."""
        await self._check_kept(run_id, after)
        quiet_since = time.monotonic()
        while True:
            batch = await self.read(run_id, after)
            if not batch:
                if time.monotonic() - quiet_since > self.idle_timeout:
                    data = json.dumps({"message": _STALLED.format(run_id=run_id)})
                    yield LoggedEvent(after + 1, "error", data)
                    return
                continue
            quiet_since = time.monotonic()
            for item in coalesce(batch):
                yield item
                after = item.id
                if item.event in TERMINAL:
                    return


_STALLED = (
    "run {run_id} stopped sending events (its server instance may have died); "
    "read the session with GET /sessions/ and send the message again if its answer is missing"
)


def _decode(entry_id: Any, fields: dict[Any, Any]) -> LoggedEvent:
    seq = int(bytes(entry_id).split(b"-", 1)[1])
    data = bytes(fields[b"d"]).decode("utf-8", "surrogatepass")
    return LoggedEvent(seq, bytes(fields[b"e"]).decode(), data)


def coalesce(events: list[LoggedEvent]) -> list[LoggedEvent]:
    """Merge runs of ``delta`` events into one with the last id; text unchanged."""
    out: list[LoggedEvent] = []
    for item in events:
        if item.event == "delta" and out and out[-1].event == "delta":
            text = json.loads(out[-1].data)["text"] + json.loads(item.data)["text"]
            merged = json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":"))
            out[-1] = LoggedEvent(item.id, "delta", merged)
        else:
            out.append(item)
    return out
