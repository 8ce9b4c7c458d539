"""Compressed idle tier vs live objects: sessions per GiB and restore latency, one run.

Run from the repository root::

    python -m benchmarks.bench_tier            # ~1 minute
    python -m benchmarks.bench_tier --quick    # smaller sizes

Each session is a 50-turn document of the engine at its defaults (the
``bench_engine`` workload: tool results truncated by the default truncator,
extractive summary), stored under many ids, each a fresh copy (nothing shared).

* heap per session (tracemalloc) and RSS growth (a fresh subprocess per row)
  for N live ``ConversationState`` objects and for N entries of
  ``CompressedTier``;
* restore latency p50/p99: ``tier.take`` (the document back), ``tier.take`` +
  filling a state (a live session back), against ``SQLiteStore.load`` + filling
  a state, measured in the same run;
* the same for "prose" sessions whose text is random words (compresses ~3x,
  not ~11x like the workload's padding), to show where the tier pays less.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from jupyter_agentmem.memory.state import ConversationState, StatePolicy
from jupyter_agentmem.memory.summarize import ExtractiveSummarizer
from jupyter_agentmem.memory.tier import CompressedTier
from jupyter_agentmem.stores import SQLiteStore

from . import workload
from .bench_engine import Pool

GiB = 1024**3
POLICY = StatePolicy(summarizer=ExtractiveSummarizer())
_WORDS = [
    "".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=2 + i % 9))
    for i in range(5000)
]


def template(kind: str) -> dict[str, Any]:
    """One 50-turn session document at the engine's defaults."""
    state = ConversationState("template", policy=POLICY)
    pool = Pool(truncate=True)
    rng = random.Random(7)
    for t in range(50):
        state.add_message(workload.user_message(0, t))
        calls = workload.tool_calls(0, t)
        state.add_message({"role": "assistant", "content": None, "tool_calls": calls})
        for j, call in enumerate(calls):
            state.add_tool_result(call["id"], pool(0, t, j))
        state.add_message(workload.answer_message(0, t))
    doc = state.to_dict()
    if kind == "prose":
        for message in doc["messages"]:
            if isinstance(message.get("content"), str):
                size = len(message["content"])
                message["content"] = " ".join(rng.choices(_WORDS, k=size // 6))[:size]
        size = len(doc["summary"])
        doc["summary"] = " ".join(rng.choices(_WORDS, k=size // 6))[:size]
    return doc


def copies(doc: dict[str, Any], n: int) -> Any:
    """Fresh documents (new strings each time), as decoded from a request or a store."""
    text = json.dumps(doc)
    for i in range(n):
        fresh = json.loads(text)
        fresh["session_id"] = f"session-{i}"
        yield fresh


def build(kind: str, holder: str, n: int) -> Any:
    doc = template(kind)
    if holder == "live":
        return [ConversationState.from_dict(d, POLICY) for d in copies(doc, n)]
    tier = CompressedTier(max_bytes=64 * GiB)
    for d in copies(doc, n):
        tier.put(d["session_id"], d)
    return tier


def heap_per_session(kind: str, holder: str, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = build(kind, holder, n)
    gc.collect()
    per = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    del keep
    return per


def rss_child(kind: str, holder: str, n: int) -> None:
    process = psutil.Process()
    template(kind)  # warm the imports and caches before the baseline
    gc.collect()
    base = process.memory_info().rss
    keep = build(kind, holder, n)
    gc.collect()
    print(json.dumps({"rss_growth": process.memory_info().rss - base, "n": len(keep)}))


def rss_per_session(kind: str, holder: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_tier", "--rss-child", kind, holder, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_growth"] / n  # type: ignore[no-any-return]


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


def restore_latency(kind: str, samples: int) -> dict[str, tuple[float, float]]:
    """µs p50/p99 of the three ways back, interleaved so load spikes hit all alike."""
    docs = list(copies(template(kind), samples))
    tier = CompressedTier(max_bytes=GiB)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite3")
        store.save_many((d["session_id"], dict(d, revision=1)) for d in docs)
        for d in docs:
            tier.put(d["session_id"], d)
        times: dict[str, list[float]] = {"take": [], "take_fill": [], "sqlite_fill": []}
        for d in docs:
            sid = d["session_id"]
            t0 = time.perf_counter()
            back = tier.take(sid)
            t1 = time.perf_counter()
            assert back is not None and back[0] == d
            tier.put(sid, d)
            t2 = time.perf_counter()
            taken = tier.take(sid)
            assert taken is not None
            state = ConversationState.from_dict(taken[0], POLICY)
            t3 = time.perf_counter()
            loaded = store.load(sid)
            assert loaded is not None
            state = ConversationState.from_dict(loaded, POLICY)
            t4 = time.perf_counter()
            assert state.messages_total == d["messages_total"]
            times["take"].append(t1 - t0)
            times["take_fill"].append(t3 - t2)
            times["sqlite_fill"].append(t4 - t3)
        store.close()
    return {name: quantiles(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--rss-child", nargs=3, metavar=("KIND", "HOLDER", "N"))
    args = parser.parse_args()
    if args.rss_child:
        kind, holder, n = args.rss_child
        rss_child(kind, holder, int(n))
        return
    heap_n, rss_n, samples = (200, 2_000, 500) if args.quick else (1_000, 20_000, 3_000)
    print(f"# compressed idle tier benchmark — {time.strftime('%Y-%m-%d')}")
    print(
        f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for kind in ("workload", "prose"):
        doc = template(kind)
        raw = len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        print(f"\n## {kind}: 50-turn session, {raw:,} B of JSON")
        print(f"| holder | heap KiB/session | RSS KiB/session ({rss_n:,}) | sessions/GiB (RSS) |")
        print("|---|---:|---:|---:|")
        per: dict[str, float] = {}
        for holder in ("live", "tier"):
            heap = heap_per_session(kind, holder, heap_n)
            rss = rss_per_session(kind, holder, rss_n)
            per[holder] = rss
            print(f"| {holder} | {heap / 1024:.2f} | {rss / 1024:.2f} | {GiB / rss:,.0f} |")
        print(f"tier holds {per['live'] / per['tier']:.1f}x more sessions per GiB (RSS)")
        lat = restore_latency(kind, samples)
        print(f"\nrestore latency over {samples:,} sessions, µs (p50 / p99):")
        print(
            f"  tier.take (document back):            {lat['take'][0]:8.1f} / {lat['take'][1]:8.1f}"
        )
        print(
            f"  tier.take + state (live session back): "
            f"{lat['take_fill'][0]:8.1f} / {lat['take_fill'][1]:8.1f}"
        )
        print(
            f"  SQLite load + state (baseline):        "
            f"{lat['sqlite_fill'][0]:8.1f} / {lat['sqlite_fill'][1]:8.1f}"
        )


if __name__ == "__main__":
    main()
