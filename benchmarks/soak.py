"""Soak test: thousands of agent turns in one kernel-like process, RSS must stay flat.

Run from the repository root::

    python -m benchmarks.soak       # 10,000 turns over 200 sessions (~5 min on 2 busy cores)
    python -m benchmarks.soak --turns 1500 --sample-every 100 --sessions 60   # CI smoke

What runs: the real ``Agent`` loop (openai SDK, streamed over loopback HTTP)
against ``FakeModelServer``'s demo model, four registered tools that each
return a distinct ~8 KB JSON document (the benchmark workload's shape) and are
named in every prompt so the model calls all four, and a *bounded*
``SessionManager`` (50 live sessions, SQLite store in a temp dir). Turns rotate
over 200 sessions, so nearly every turn restores a session from SQLite and
evicts another: the store, restore, eviction, truncation, compaction and
streaming paths all run thousands of times.

RSS is sampled (after ``gc.collect()``) every ``--sample-every`` turns. After
the warm-up (the first 20 % of turns and at least 5 turns per session, while
caches legitimately fill: the SQLite page cache, the 50-session LRU, summaries
growing to their bound, the SDK's connection pool) the least-squares slope of
RSS over turns must stay under ``--max-slope-kib`` per 1,000 turns, else the
script exits 1. A run too short to leave 8 samples after warm-up is refused.

Why 1,024 KiB per 1,000 turns: everything in this process is bounded by
design, so the true slope is zero and what remains is allocator noise (a few
hundred KiB up or down around a plateau). Each turn handles ~40 KB of tool
output and context; leaking one message per turn (≥ 1 KB) already gives
≥ 1 MiB per 1,000 turns, and leaking a tool result gives ~8 MiB. So the
threshold sits above the noise and below the smallest leak worth catching.
Checked: keeping every turn's messages in a module-level list (the classic
leak) measures ~+22 MiB per 1,000 turns and exits 1; the real loop measures
+1 KiB per 1,000 turns over 10,000 turns.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.model.tools import ToolRegistry
from jupyter_agentmem.stores import SQLiteStore
from jupyter_agentmem.testing import FakeModelServer

from . import workload

TOOLS = ("lookup_orders", "lookup_items", "lookup_prices", "lookup_stock")
WARMUP_TURNS_PER_SESSION = 5
MIN_STEADY_SAMPLES = 8
KiB = 1024


@dataclass
class Current:
    """The turn being played, read by the tools (they run in this thread)."""

    session: int = 0
    turn: int = 0


@dataclass
class SoakResult:
    """RSS samples ``(turn, bytes)`` and what the run did."""

    samples: list[tuple[int, int]]
    slope: float  # bytes per 1,000 turns, after warm-up
    steady_points: int
    seconds: float
    evictions: int
    restores: int
    compactions: int
    requests: int


def make_registry(current: Current) -> ToolRegistry:
    """Four tools returning distinct JSON documents of the workload's shape."""
    registry = ToolRegistry()

    def tool(part: int) -> Callable[[], str]:
        def lookup() -> str:
            return workload.tool_result(current.session, current.turn, part)

        lookup.__doc__ = f"Look up {TOOLS[part].split('_')[1]} for the user's question."
        return lookup

    for part, name in enumerate(TOOLS):
        registry.register(tool(part), name)
    return registry


def warmup_turns(turns: int, fraction: float, sessions: int) -> int:
    """Turns ignored by the slope: ``fraction`` of the run, and at least five turns per
    rotated session (until then sessions and their summaries are still growing)."""
    return max(int(turns * fraction), WARMUP_TURNS_PER_SESSION * sessions)


def slope_per_1000(samples: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS bytes over turns, in bytes per 1,000 turns."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var = sum((x - mean_x) ** 2 for x, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((x - mean_x) * (y - mean_y) for x, y in samples)
    return cov / var * 1000


def soak(turns: int, sample_every: int, sessions: int, live: int, warmup: float) -> SoakResult:
    """Play ``turns`` turns; return RSS samples and counters."""
    process = psutil.Process()
    current = Current()
    samples: list[tuple[int, int]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeModelServer(
            default="demo", demo_delay=0, demo_chunk_size=256, max_requests_kept=4
        ) as server,
    ):
        manager = SessionManager(
            max_sessions=live, store=SQLiteStore(os.path.join(tmp, "soak.sqlite3"))
        )
        config = AgentMem(base_url=server.base_url, model="soak", summarizer="extractive")
        agent = Agent(manager, config, registry=make_registry(current))
        named = ", ".join(TOOLS)
        started = time.perf_counter()
        try:
            for t in range(turns):
                current.session, current.turn = t % sessions, t // sessions
                prompt = f"s{current.session} question {current.turn}: please call {named}."
                response = agent.chat(prompt, session=f"soak-{current.session}")
                if not response.text or len(response.tool_results) != len(TOOLS):
                    raise RuntimeError(f"turn {t}: unexpected reply {response.text[:80]!r}")
                if (t + 1) % sample_every == 0:
                    gc.collect()
                    samples.append((t + 1, process.memory_info().rss))
        finally:
            agent.close()
            stats = manager.stats()
            manager.close()
    elapsed = time.perf_counter() - started
    steady = [s for s in samples if s[0] > warmup_turns(turns, warmup, sessions)]
    return SoakResult(
        samples=samples,
        slope=slope_per_1000(steady),
        steady_points=len(steady),
        seconds=elapsed,
        evictions=stats.evictions,
        restores=stats.restores,
        compactions=stats.compactions,
        requests=server.request_count,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=200, help="sessions rotated through")
    parser.add_argument("--live", type=int, default=50, help="manager max_sessions")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of turns ignored")
    parser.add_argument("--max-slope-kib", type=float, default=1024.0, help="per 1,000 turns")
    args = parser.parse_args(argv)
    warm = warmup_turns(args.turns, args.warmup, args.sessions)
    steady = (args.turns - warm) // args.sample_every
    if steady < MIN_STEADY_SAMPLES:
        parser.error(
            f"too short: {steady} RSS samples after warm-up, need {MIN_STEADY_SAMPLES} "
            f"(warm-up is max({args.warmup:.0%} of turns, {WARMUP_TURNS_PER_SESSION} turns "
            "per session); raise --turns or lower --sample-every / --sessions)"
        )
    result = soak(args.turns, args.sample_every, args.sessions, args.live, args.warmup)
    print(f"# soak: {args.turns:,} turns over {args.sessions} sessions, {args.live} live")
    print(
        f"{result.seconds:.0f} s ({args.turns / result.seconds:.0f} turns/s), "
        f"{result.requests:,} model requests, {result.evictions:,} evictions, "
        f"{result.restores:,} restores, {result.compactions:,} compactions"
    )
    print("turn      RSS MiB")
    for turn, rss in result.samples:
        print(f"{turn:>6} {rss / 2**20:>10.1f}")
    slope_kib = result.slope / KiB
    verdict = "OK" if slope_kib <= args.max_slope_kib else "LEAK"
    print(
        f"{verdict}: RSS slope after warm-up {slope_kib:+,.0f} KiB per 1,000 turns "
        f"({result.steady_points} samples; threshold {args.max_slope_kib:,.0f} KiB)"
    )
    if verdict != "OK":
        print(
            "RSS keeps growing while the number of live sessions is bounded: something "
            "retains per-turn objects (run with tracemalloc to find what).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
