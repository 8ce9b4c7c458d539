"""Store benchmark: SQLite (the default) and Redis side by side, through the real manager.

Run from the repository root (needs ``redis-server`` on PATH; it starts its own
on a free port and stops it afterwards)::

    python -m benchmarks.bench_stores            # full run (~1 minute)
    python -m benchmarks.bench_stores --quick    # smaller sizes, for a smoke test

What is measured, in this run, for both stores:

* the raw store: ``save`` and ``load`` of one 50-turn session document (ops/s),
  and the batched paths ``save_many`` / ``load_many`` 100 sessions a call;
* eviction + restore through ``SessionManager(max_sessions=100)`` cycling over
  2,000 sessions (best of 3 passes): every ``get_or_create`` restores one
  session; evictions leave one store write each (the old path,
  ``evict_batch = 0``), or batched (``save_many``, up to ``evict_batch``
  sessions a write), or into a compressed tier that holds every idle session
  (``tier_bytes``; the store is then only read on the first pass); and 100
  sessions at a time through ``manager.get_many`` (one ``load_many`` and one
  batched eviction per 100);
* restore latency of ``get_or_create`` on an evicted session, p50/p99 (ms),
  with room in the manager so no eviction is timed with it;
* space per persisted session: Redis ``INFO memory`` ``used_memory`` delta per
  session over 100,000 sessions (written with pipelined ``save_many``), also
  without compression; SQLite file size (with WAL) per session.

Sessions are built once, like a real agent's (``tests/workload.py`` turns, tool
results through ``add_tool_result`` and the default truncator, compaction by the
default ExtractiveSummarizer), then stored under many ids, because building one
takes ~0.5 s. Note that the workload pads messages with repeated characters, so
it compresses better (~11x) than typical prose or JSON (3-5x).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.memory.state import ConversationState
from jupyter_agentmem.memory.summarize import ExtractiveSummarizer
from jupyter_agentmem.stores import SQLiteStore
from jupyter_agentmem.stores.base import SessionStore
from jupyter_agentmem.stores.redis import RedisStore
from tests.redis_server import INSTALL_HINT, RedisServer, find_redis_server
from tests.workload import turn_messages

from . import against

GiB = 1024**3


def build_document(turns: int = 50) -> dict[str, Any]:
    """One realistic session document (``ConversationState.to_dict()``)."""
    state = ConversationState("template", summarizer=ExtractiveSummarizer())
    truncate = importlib.util.find_spec("jupyter_agentmem.memory.truncate") is not None
    for turn in range(turns):
        for message in turn_messages(turn, None if truncate else "x" * 2000):
            if message["role"] == "tool" and truncate:
                state.add_tool_result(message["tool_call_id"], message["content"])
            else:
                state.add_message(message)
    return state.to_dict()


def as_session(template: dict[str, Any], session_id: str) -> dict[str, Any]:
    return dict(template, session_id=session_id, revision=1)  # as if saved once


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def measure(
    store: SessionStore, template: dict[str, Any], sessions: int, samples: int
) -> dict[str, float]:
    """Raw store speed, then eviction/restore through a SessionManager."""
    ids = [f"bench-{i}" for i in range(sessions)]
    result: dict[str, float] = {}
    docs = [as_session(template, sid) for sid in ids]
    start = time.perf_counter()
    for data in docs:
        store.save(data["session_id"], data)
    result["save_per_s"] = rate(sessions, time.perf_counter() - start)
    start = time.perf_counter()
    for sid in ids:
        store.load(sid)
    result["load_per_s"] = rate(sessions, time.perf_counter() - start)
    batch = 100  # the batched paths: one transaction / one script run, one query / pipeline
    again = [dict(d, revision=2) for d in docs]
    start = time.perf_counter()
    for first in range(0, sessions, batch):
        store.save_many((d["session_id"], d) for d in again[first : first + batch])  # type: ignore[attr-defined]
    result["save_many_per_s"] = rate(sessions, time.perf_counter() - start)
    start = time.perf_counter()
    for first in range(0, sessions, batch):
        found = store.load_many(ids[first : first + batch])  # type: ignore[attr-defined]
        assert len(found) == len(ids[first : first + batch])
    result["load_many_per_s"] = rate(sessions, time.perf_counter() - start)

    batch = SessionManager.evict_batch
    configs = (("cycle_single_per_s", 0, 0), ("cycle_tier_per_s", batch, 64 << 20))
    for key, evict_batch, tier_bytes in (*configs, ("cycle_per_s", batch, 0)):
        manager = SessionManager(
            store=store, max_sessions=100, max_memory_bytes=4 * GiB, tier_bytes=tier_bytes
        )
        manager.evict_batch = evict_batch  # 0: one store write per eviction (the old path)
        for sid in ids:  # warm-up pass: fills the manager, every later access evicts
            manager.get_or_create(sid)
        best = 0.0
        for _ in range(3):  # best of 3 passes: the box is shared
            start = time.perf_counter()
            for sid in ids:  # each access restores one session; evictions leave in batches
                manager.get_or_create(sid)
            best = max(best, rate(sessions, time.perf_counter() - start))
        result[key] = best
        if key != "cycle_per_s":
            manager.flush()  # the next manager starts from the same store
    best = 0.0
    for _ in range(3):  # a hub waking 100 sessions at a time: one load_many, one save_many
        start = time.perf_counter()
        for first in range(0, sessions, 100):
            manager.get_many(ids[first : first + 100])
        best = max(best, rate(sessions, time.perf_counter() - start))
    result["get_many_per_s"] = best
    latencies = []
    for i in range(samples):
        manager.evict(manager.live_ids()[0])  # make room: only the restore is timed
        evicted = ids[(i * 7919) % sessions]
        while evicted in manager.live_ids():
            evicted = ids[(ids.index(evicted) + 1) % sessions]
        start = time.perf_counter()
        state = manager.get_or_create(evicted)
        latencies.append((time.perf_counter() - start) * 1000)
        assert state.is_loaded and state.messages_total == template["messages_total"]
    cuts = statistics.quantiles(latencies, n=100)
    result["p50_ms"], result["p99_ms"] = cuts[49], cuts[98]
    stats = manager.stats()
    assert stats.persist_failures == 0, stats.last_store_error
    return result


def redis_memory(url: str, template: dict[str, Any], count: int, compress: bool) -> float:
    """``used_memory`` growth per session after writing ``count`` sessions."""
    client = redis.Redis.from_url(url)
    client.flushall()
    before = int(client.info("memory")["used_memory"])
    threshold = 4096 if compress else 1 << 60
    store = RedisStore(url, prefix="mem:", compress_threshold=threshold)
    batch = 500
    for start in range(0, count, batch):
        ids = range(start, min(start + batch, count))
        store.save_many((f"session-{i:06d}", as_session(template, f"session-{i:06d}")) for i in ids)
    assert store.count() == count
    after = int(client.info("memory")["used_memory"])
    store.close()
    client.flushall()
    client.close()
    return (after - before) / count


ROWS = [
    ("store.save (sessions/s)", "save_per_s", "{:,.0f}"),
    ("store.load (sessions/s)", "load_per_s", "{:,.0f}"),
    ("store.save_many, 100 a batch (sessions/s)", "save_many_per_s", "{:,.0f}"),
    ("store.load_many, 100 a batch (sessions/s)", "load_many_per_s", "{:,.0f}"),
    ("evict+restore via manager, 1 write each (/s)", "cycle_single_per_s", "{:,.0f}"),
    ("evict+restore via manager, batched (/s)", "cycle_per_s", "{:,.0f}"),
    ("  the same with a 64 MiB compressed tier (/s)", "cycle_tier_per_s", "{:,.0f}"),
    ("  100 at a time through get_many (/s)", "get_many_per_s", "{:,.0f}"),
    ("restore latency p50 (ms)", "p50_ms", "{:.2f}"),
    ("restore latency p99 (ms)", "p99_ms", "{:.2f}"),
]


def both_stores(
    server: RedisServer, tmp: Path, template: dict[str, Any], sessions: int, samples: int
) -> tuple[dict[str, dict[str, float]], float]:
    """``measure`` on a fresh SQLite file and on ``server``; also SQLite bytes per session."""
    sqlite = SQLiteStore(tmp / "bench.sqlite3")
    results = {"SQLite": measure(sqlite, template, sessions, samples)}
    sqlite.close()
    files = [tmp / n for n in ("bench.sqlite3", "bench.sqlite3-wal")]
    sqlite_bytes = sum(f.stat().st_size for f in files if f.exists()) / sessions
    store = RedisStore(server.url, prefix="bench:")
    results["Redis"] = measure(store, template, sessions, samples)
    store.close()
    return results, sqlite_bytes


def stores_in_child(sessions: int, samples: int) -> dict[str, Any]:
    """One whole measurement (its own redis-server and SQLite file), for ``against.run``."""
    executable = find_redis_server()
    assert executable is not None, INSTALL_HINT
    with tempfile.TemporaryDirectory() as tmp, RedisServer(executable, Path(tmp)) as server:
        results, sqlite_bytes = both_stores(server, Path(tmp), build_document(), sessions, samples)
    return {"results": results, "sqlite_bytes": sqlite_bytes}


def compare_trees(tree: str, rounds: int, sessions: int, samples: int) -> None:
    """This tree against ``tree``, alternating fresh processes; best of ``rounds`` each
    (highest rate, lowest latency), so the load of a shared box hits both alike."""
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(rounds):
        for who, where in (("after", ""), ("before", tree)):
            got = against.run(
                where, "bench_stores", "stores_in_child", sessions=sessions, samples=samples
            )
            got["results"]["SQLite"]["bytes"] = got["sqlite_bytes"]
            for store, figures in got["results"].items():
                kept = best.setdefault(who, {}).setdefault(store, {})
                for key, value in figures.items():
                    pick = min if key.endswith("_ms") or key == "bytes" else max
                    kept[key] = pick(kept.get(key, value), value)
    print(f"# bench_stores: this tree (after) vs {tree} (before), best of {rounds} rounds each")
    print(
        f"_{platform.platform()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}_\n"
    )
    print("| metric | SQLite before | SQLite after | × | Redis before | Redis after | × |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, key, fmt in [*ROWS, ("SQLite bytes per session (file + WAL)", "bytes", "{:,.0f}")]:
        cells = []
        for store in ("SQLite", "Redis"):
            old, new = best["before"][store].get(key), best["after"][store].get(key)
            if old is None or new is None:
                cells += ["", "", ""]
                continue
            ratio = old / new if key.endswith("_ms") or key == "bytes" else new / old
            cells += [fmt.format(old), fmt.format(new), f"{ratio:.2f}"]
        print(f"| {label.strip()} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    parser.add_argument("--baseline-tree", metavar="TREE", help="also measure that checkout")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline-tree")
    args = parser.parse_args()
    sessions, samples, many, plain = (
        (300, 100, 5_000, 1_000) if args.quick else (2_000, 500, 100_000, 20_000)
    )
    executable = find_redis_server()
    if executable is None:
        raise SystemExit(INSTALL_HINT)
    if args.baseline_tree:
        compare_trees(args.baseline_tree, args.rounds, sessions, samples)
        return

    started = time.perf_counter()
    template = build_document()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(executable, Path(tmp)) as server:
        results, sqlite_bytes = both_stores(server, Path(tmp), template, sessions, samples)
        per_session = redis_memory(server.url, template, many, compress=True)
        per_plain = redis_memory(server.url, template, plain, compress=False)
        with redis.Redis.from_url(server.url) as client:
            version = client.info("server")["redis_version"]

    text = json.dumps(template, ensure_ascii=False, separators=(",", ":")).encode()
    from jupyter_agentmem.stores import codec  # here: a --baseline-tree may predate it

    stored = len(codec.pack(text, 0) or text)  # what RedisStore (and SQLite over 4 KiB) writes
    print(
        f"\njupyter-agentmem store benchmark: Python {platform.python_version()}, "
        f"redis-server {version} on 127.0.0.1 (TCP), SQLite {sqlite3.sqlite_version}"
        f" (WAL), {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} (client and server share the CPUs)"
    )
    print(
        f"session: 50 turns, {template['messages_total']} messages seen, "
        f"{len(template['messages'])} recent + {len(template['summary'])}-char summary; "
        f"document {len(text):,} B JSON, {stored:,} B as stored (zlib)"
    )
    print(f"{sessions:,} sessions, manager max_sessions=100, {samples} latency samples\n")
    print(f"| {'metric':<44} | {'SQLite':>10} | {'Redis':>10} |")
    print(f"|{'-' * 46}|{'-' * 12}|{'-' * 12}|")
    for label, key, fmt in ROWS:
        sq, rd = (fmt.format(results[name][key]) for name in ("SQLite", "Redis"))
        print(f"| {label:<44} | {sq:>10} | {rd:>10} |")
    print(
        f"| {'bytes per persisted session':<44} | {sqlite_bytes:>10,.0f} | {per_session:>10,.0f} |"
    )
    print(
        f"| {'  Redis, compression off (' + format(plain, ',') + ' sessions)':<44} | "
        f"{'':>10} | {per_plain:>10,.0f} |"
    )
    print(
        f"\nRedis memory measured over {many:,} sessions (used_memory delta / count); "
        f"SQLite: file + WAL size / {sessions:,}. Total run {time.perf_counter() - started:.0f} s."
    )


if __name__ == "__main__":
    main()
