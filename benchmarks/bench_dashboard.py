"""Dashboard tick cost with 10 and 10,000 live sessions, and MemoryMonitor.check() cost.

Run from the repository root::

    python -m benchmarks.bench_dashboard            # ~15 s
    python -m benchmarks.bench_dashboard --quick    # fewer repetitions

A tick is what the shared ticker thread does once per interval for each open
dashboard: ``kernel_snapshot()`` (monitor check + ``manager.stats()`` +
``largest_sessions(10)``) and the widget update.  Each row is the median of
several timed batches, in microseconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook.extension import KernelContext
from jupyter_agentmem.watch.dashboard import MemoryDashboard, kernel_snapshot
from jupyter_agentmem.watch.monitor import MemoryMonitor

MiB = 2**20


def per_call_us(fn: Callable[[], object], calls: int, batches: int = 7) -> float:
    """Median over ``batches`` of the mean time of ``calls`` calls, in microseconds."""
    fn()  # warm up
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def context_with(live: int) -> KernelContext:
    """A real kernel context (memory store) holding ``live`` sessions of 2 messages each."""
    config = AgentMem(
        store_url="memory://", max_sessions=max(live, 1000) * 2, max_memory_bytes=4096 * MiB
    )
    context = KernelContext(None, config)
    for i in range(live):
        state = context.manager.get_or_create(f"session-{i:05d}")
        state.add_messages(
            [
                {"role": "user", "content": f"question {i} " * (1 + i % 7)},
                {"role": "assistant", "content": f"answer {i} " * (1 + i % 13)},
            ]
        )
    return context


def measure(live: int, calls: int) -> dict[str, float]:
    context = context_with(live)
    manager = context.manager
    dash = MemoryDashboard(lambda: kernel_snapshot(context, 10))
    snap = kernel_snapshot(context, 10)
    render_only = MemoryDashboard(lambda: snap)
    try:
        return {
            "tick (snapshot + refresh)": per_call_us(dash.refresh, calls),
            "  kernel_snapshot()": per_call_us(lambda: kernel_snapshot(context, 10), calls),
            "    manager.stats()": per_call_us(manager.stats, calls),
            "    manager.largest_sessions(10)": per_call_us(
                lambda: manager.largest_sessions(10), calls
            ),
            "    monitor.check()": per_call_us(context.monitor.check, calls),
            "  widget update only": per_call_us(render_only.refresh, calls),
        }
    finally:
        dash.close()
        render_only.close()
        context.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    calls = 20 if args.quick else 100
    small, large = measure(10, calls), measure(10_000, max(5, calls // 5))
    print(f"python {sys.version.split()[0]}; median of 7 batches; microseconds per call\n")
    print(f"{'operation':36} {'10 live':>10} {'10,000 live':>12} {'ratio':>7}")
    for name in small:
        print(f"{name:36} {small[name]:10.1f} {large[name]:12.1f} {large[name] / small[name]:7.1f}")
    monitor = MemoryMonitor()
    fast = per_call_us(monitor.check, calls * 5)
    slow = per_call_us(lambda: monitor.check(detailed=True), calls)
    print(f"\n{'MemoryMonitor.check()':36} {fast:10.1f}")
    print(f"{'MemoryMonitor.check(detailed=True)':36} {slow:10.1f}")
    tick = large["tick (snapshot + refresh)"]
    print(f"\nat 1 tick/s the 10,000-session tick uses {tick / 1e4:.2f}% of one core")


if __name__ == "__main__":
    main()
