"""Core engine benchmark: heap, RSS and throughput against a naive keep-everything list.

Run from the repository root::

    python -m benchmarks.bench_engine            # full run (~2 minutes)
    python -m benchmarks.bench_engine --quick    # smaller sizes, for CI smoke

Every figure is measured in this run, the naive baseline side by side.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import psutil

from jupyter_agentmem import SessionManager, StatePolicy, ToolOutputTruncator
from jupyter_agentmem.stores import MemoryStore, SQLiteStore

from . import workload

MiB = 1024 * 1024


def engine_manager(sessions: int, store: Any = None) -> SessionManager:
    """The engine with its defaults, except room for every session in memory."""
    return SessionManager(
        max_sessions=max(sessions, 1000),
        max_memory_bytes=64 * 1024 * MiB,
        store=store or MemoryStore(),
    )


def feed_engine(
    manager: SessionManager, session: int, turns: int, outputs: Callable[[int, int, int], str]
) -> None:
    state = manager.get_or_create(f"session-{session}")
    for t in range(turns):
        state.add_message(workload.user_message(session, t))
        calls = workload.tool_calls(session, t)
        state.add_message({"role": "assistant", "content": None, "tool_calls": calls})
        for j, call in enumerate(calls):
            state.add_tool_result(call["id"], outputs(session, t, j))
        state.add_message(workload.answer_message(session, t))


def feed_naive(
    history: list[dict[str, Any]], session: int, turns: int, outputs: Callable[[int, int, int], str]
) -> None:
    for t in range(turns):
        history.append(workload.user_message(session, t))
        history.append(
            {"role": "assistant", "content": None, "tool_calls": workload.tool_calls(session, t)}
        )
        for j in range(4):
            history.append(
                {
                    "role": "tool",
                    "tool_call_id": f"call_{session}_{t}_{j}",
                    "content": outputs(session, t, j),
                }
            )
        history.append(workload.answer_message(session, t))


def raw_outputs(session: int, turn: int, call: int) -> str:
    return workload.tool_result(session, turn, call)


class Pool:
    """Pre-built outputs, copied fresh per use: RSS runs need size, not generation time."""

    def __init__(self, truncate: bool, size: int = 64) -> None:
        texts = [workload.tool_result(0, i, 0) for i in range(size)]
        if truncate:
            truncator = ToolOutputTruncator()
            texts = [truncator.truncate(t) for t in texts]
        self.texts = texts

    def __call__(self, session: int, turn: int, call: int) -> str:
        return workload.fresh(self.texts[(session * 7 + turn * 4 + call) % len(self.texts)])


def heap_per_session(kind: str, sessions: int, turns: int) -> tuple[float, float]:
    """(real heap bytes per session by tracemalloc, engine estimate per session)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep: Any
    if kind == "naive":
        keep = [[] for _ in range(sessions)]
        for s in range(sessions):
            feed_naive(keep[s], s, turns, raw_outputs)
        estimate = 0.0
    else:
        keep = engine_manager(sessions)
        for s in range(sessions):
            feed_engine(keep, s, turns, raw_outputs)
        estimate = keep.stats().estimated_bytes / sessions
    gc.collect()
    real = (tracemalloc.get_traced_memory()[0] - before) / sessions
    tracemalloc.stop()
    del keep
    return real, estimate


def rss_child(kind: str, sessions: int, turns: int) -> None:
    """Runs in a fresh interpreter: build everything, print the RSS growth as JSON."""
    process = psutil.Process()
    gc.collect()
    pool = Pool(truncate=kind == "engine")
    base = process.memory_info().rss
    started = time.perf_counter()
    if kind == "naive":
        histories: list[list[dict[str, Any]]] = [[] for _ in range(sessions)]
        for s in range(sessions):
            feed_naive(histories[s], s, turns, pool)
    else:
        manager = engine_manager(sessions)
        for s in range(sessions):
            feed_engine(manager, s, turns, pool)
    gc.collect()
    grown = process.memory_info().rss - base
    print(json.dumps({"rss_growth": grown, "seconds": time.perf_counter() - started}))


def rss_growth(kind: str, sessions: int, turns: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_engine",
            "--rss-child",
            kind,
            str(sessions),
            str(turns),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def throughput_add(sessions: int, rounds: int) -> dict[str, float]:
    """add_message/s on live sessions: defaults (with inline compaction) vs a bare list."""
    turn = [
        workload.user_message(0, 0),
        {"role": "assistant", "content": None, "tool_calls": workload.tool_calls(0, 0)},
    ]
    turn += [
        {"role": "tool", "tool_call_id": f"call_0_0_{j}", "content": "x" * 2000} for j in range(4)
    ]
    turn.append(workload.answer_message(0, 0))
    count = rounds * sessions * len(turn)

    def rate(adders: list[Callable[[dict[str, Any]], None]]) -> float:
        started = time.perf_counter()
        for _ in range(rounds):
            for add in adders:
                for message in turn:
                    add(message)
        return count / (time.perf_counter() - started)

    manager = engine_manager(sessions)
    states = [manager.get_or_create(f"s{i}") for i in range(sessions)]
    engine = rate([s.add_message for s in states])
    bare_manager = SessionManager(
        max_sessions=max(sessions, 1000),
        max_memory_bytes=64 * 1024 * MiB,
        store=MemoryStore(),
        policy=StatePolicy(auto_compact=False, max_recent=10**9, max_recent_bytes=2**62),
    )
    bare = rate([bare_manager.get_or_create(f"s{i}").add_message for i in range(sessions)])
    del bare_manager
    histories: list[list[dict[str, Any]]] = [[] for _ in range(sessions)]
    naive = rate([h.append for h in histories])
    started = time.perf_counter()
    lookups = 0
    for _ in range(rounds * 5):
        for i in range(sessions):
            manager.get_or_create(f"s{i}")
            lookups += 1
    get_rate = lookups / (time.perf_counter() - started)
    truncator = ToolOutputTruncator()
    outputs = [workload.tool_result(0, i, 0) for i in range(200)]
    started = time.perf_counter()
    for text in outputs:
        truncator.truncate(text)
    truncate_us = (time.perf_counter() - started) / len(outputs) * 1e6
    return {
        "engine": engine,
        "bare": bare,
        "naive": naive,
        "get_or_create": get_rate,
        "truncate_us": truncate_us,
    }


def eviction_cycle(sessions: int, turns: int, live: int) -> dict[str, float]:
    """SQLite eviction + restore: cycle through more sessions than fit in memory."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(os.path.join(tmp, "bench.sqlite3"))
        pool = Pool(truncate=True)
        builder = engine_manager(sessions, store=store)
        for s in range(sessions):
            feed_engine(builder, s, turns, pool)
        builder.flush()
        manager = SessionManager(max_sessions=live, store=store)
        latencies = []
        started = time.perf_counter()
        for s in range(sessions):
            t0 = time.perf_counter()
            state = manager.get_or_create(f"session-{s}")
            latencies.append(time.perf_counter() - t0)
            assert state.messages_total == turns * 7
        elapsed = time.perf_counter() - started
        stats = manager.stats()
        manager.close()
        latencies.sort()
        return {
            "sessions_per_s": sessions / elapsed,
            "restores": stats.restores,
            "evictions": stats.evictions,
            "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI smoke run)")
    parser.add_argument("--rss-child", nargs=3, metavar=("KIND", "SESSIONS", "TURNS"))
    args = parser.parse_args()
    if args.rss_child:
        kind, sessions, turns = args.rss_child
        rss_child(kind, int(sessions), int(turns))
        return
    quick = args.quick
    print(f"# jupyter-agentmem engine benchmark — {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    )
    n_heap = 5 if quick else 20
    print("\n## Heap per session (tracemalloc), estimate vs real")
    print(
        f"{'turns':>6} {'naive KiB':>10} {'engine KiB':>11} {'estimate KiB':>13} "
        f"{'est/real':>9} {'naive/engine':>13}"
    )
    heap = {}
    for turns in (50,) if quick else (50, 500):
        naive, _ = heap_per_session("naive", max(2, n_heap // 4), turns)
        real, estimate = heap_per_session("engine", n_heap, turns)
        heap[turns] = real
        print(
            f"{turns:>6} {naive / 1024:>10.1f} {real / 1024:>11.1f} {estimate / 1024:>13.1f} "
            f"{estimate / real:>9.2f} {naive / real:>12.0f}x"
        )
    if 500 in heap:
        print(f"growth 50 -> 500 turns: {100 * (heap[500] / heap[50] - 1):+.1f}%")
    print("\n## Process RSS growth (fresh subprocess each), 50 turns per session")
    print(
        f"{'kind':>8} {'sessions':>9} {'RSS MiB':>9} {'KiB/session':>12} {'sessions/GiB':>13} "
        f"{'build s':>8}"
    )
    for kind, sessions in (
        [("engine", 1000)] if quick else [("naive", 1000), ("engine", 1000), ("engine", 10_000)]
    ):
        out = rss_growth(kind, sessions, 50)
        per = out["rss_growth"] / sessions
        print(
            f"{kind:>8} {sessions:>9} {out['rss_growth'] / MiB:>9.1f} {per / 1024:>12.1f} "
            f"{2**30 / per:>13,.0f} {out['seconds']:>8.1f}"
        )
    print("\n## Throughput (live sessions)")
    rates = throughput_add(200 if quick else 1000, 3 if quick else 20)
    print(f"add_message/s  engine defaults (incl. inline compaction): {rates['engine']:>12,.0f}")
    print(f"add_message/s  engine, compaction off (the add path):     {rates['bare']:>12,.0f}")
    print(
        f"add_message/s  naive list.append:                         {rates['naive']:>12,.0f}"
        f"  ({rates['naive'] / rates['engine']:.0f}x faster, unbounded)"
    )
    print(f"get_or_create/s on live sessions: {rates['get_or_create']:>12,.0f}")
    print(f"ToolOutputTruncator on an 11 KB JSON result: {rates['truncate_us']:,.0f} µs")
    print("\n## SQLite eviction + restore (sessions of 50 turns, 100 live)")
    cycle = eviction_cycle(300 if quick else 2000, 50, 100)
    print(
        f"evict+restore sessions/s: {cycle['sessions_per_s']:,.0f}  "
        f"(restores {cycle['restores']:,}, evictions {cycle['evictions']:,}); "
        f"get_or_create latency p50 {cycle['p50_ms']:.2f} ms, p99 {cycle['p99_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
