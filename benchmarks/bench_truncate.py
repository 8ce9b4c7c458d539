"""ToolOutputTruncator timings, with ``json.loads`` of the same text for scale and,
optionally, another checkout's truncator (before/after) in the same run.

Run from the repository root::

    python -m benchmarks.bench_truncate                      # ~1 minute
    python -m benchmarks.bench_truncate --baseline /work/main  # also time that tree

Why ``json.loads`` beside every row: on a shared machine absolute times move
with the load, the ratio to the C decoder much less. Rows are timed in turn
(ours, the baseline, the decoder), best of ``--repeats``, so load hits each alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from jupyter_agentmem.memory.truncate import ToolOutputTruncator

from . import workload


def baseline_module(tree: str) -> ModuleType:
    """``jupyter_agentmem/memory/truncate.py`` of another checkout, with its sibling
    ``truncate_*`` modules, loaded as a package of its own (``baseline_memory``) whose
    ``__init__`` is not run (it would import the rest of that checkout)."""
    package = ModuleType("baseline_memory")
    package.__path__ = [os.path.join(tree, "jupyter_agentmem", "memory")]
    sys.modules["baseline_memory"] = package
    return importlib.import_module("baseline_memory.truncate")


def use_orjson(on: bool, *packages: str) -> None:
    """Switch the optional orjson path on or off in ours and the baseline alike."""
    for name in packages:
        fast = sys.modules.get(f"{name}.truncate_fast")
        if fast is not None:
            vars(fast)["ENABLED"] = on and getattr(fast, "_orjson", None) is not None


def cases() -> dict[str, tuple[list[Any], int]]:
    """name -> (inputs, how many calls per timing)."""
    results = [workload.tool_result(0, i, 0) for i in range(64)]
    row = '{"id":12345,"name":"abcdef","values":[1,2,3],"ok":true},'
    line = "2024-01-01 12:00:00 INFO something happened\n"
    deep = "[" * 900 + "]" * 900
    return {
        "one workload result (~7.6 KB JSON)": (results, 64),
        "100 MB JSON rows": (["[" + row * (100_000_000 // len(row)) + '{"id":0}]'], 1),
        "100 MB plain text": ([line * (100_000_000 // len(line))], 1),
        "100 MB [1,1,...]": (["[" + "1," * 50_000_000 + "1]"], 1),
        "100 MB [[[...]]]": (["[" * 50_000_000 + "]" * 50_000_000], 1),
        "2 MB [[],[],...]": (["[" + "[]," * 666_666 + "[]]"], 1),
        "2 MB of 900-deep lists": (["[" + ",".join([deep] * (2_000_000 // 1801)) + "]"], 1),
    }


def best(fn: Callable[[Any], object], inputs: list[Any], calls: int, repeats: int) -> float:
    """Best mean seconds per call over ``repeats`` passes."""
    out = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            fn(inputs[i % len(inputs)])
        out = min(out, (time.perf_counter() - started) / calls)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="TREE", help="also time this checkout's truncator")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stdlib", action="store_true", help="switch orjson off in both")
    args = parser.parse_args()
    ours = ToolOutputTruncator()
    baseline = baseline_module(args.baseline) if args.baseline else None
    theirs = baseline.ToolOutputTruncator() if baseline else None
    use_orjson(not args.stdlib, "jupyter_agentmem.memory", "baseline_memory")
    print(f"# ToolOutputTruncator — {time.strftime('%Y-%m-%d')}")
    print(f"_{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores_")
    print(f"_orjson: {'off' if args.stdlib else 'on where installed'}_\n")
    head = "| input | ours | baseline | × faster | `json.loads` | ours / loads |"
    print(head + "\n|---|---:|---:|---:|---:|---:|")
    for name, (inputs, calls) in cases().items():
        times: dict[str, float] = {}
        for _ in range(args.repeats):  # interleaved, so load spikes hit every row alike
            for key, fn in (
                ("ours", ours.truncate),
                ("base", theirs.truncate if theirs else None),
                ("loads", json.loads if len(inputs[0]) < 3_000_000 else None),
            ):
                if fn is not None:
                    t = best(fn, inputs, calls, 1)
                    times[key] = min(times.get(key, t), t)
        base, loads = times.get("base"), times.get("loads")
        print(
            f"| {name} | {times['ours'] * 1e3:,.3f} ms | "
            + (f"{base * 1e3:,.3f} ms | {base / times['ours']:.1f}× | " if base else "— | — | ")
            + (f"{loads * 1e3:,.3f} ms | {times['ours'] / loads:.2f} |" if loads else "— | — |")
        )


if __name__ == "__main__":
    main()
