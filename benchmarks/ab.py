"""Before/after of any benchmark function that returns numbers, in one run, alternating.

    python -m benchmarks.ab --baseline-tree ../old bench_engine.throughput_add \
        sessions=100 rounds=150

Each round runs the function once in a fresh process against this tree and once
against ``--baseline-tree`` (see :mod:`.against`); the table keeps the best of
the rounds per figure (the highest for a rate, the lowest for a time: a key ending
in ``_ms``, ``_us``, ``_s`` or ``seconds``, but not ``_per_s``) and the ratio in the direction "×
better". Keyword values are read as JSON (``rounds=150``) or else kept as text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

from . import against

_TIMES = ("_ms", "_us", "_s", "seconds")


def _lower_is_better(key: str) -> bool:
    """A time (``p50_ms``, ``truncate_us``, ``seconds``), not a rate (``sessions_per_s``)."""
    return key.endswith(_TIMES) and not key.endswith("_per_s")


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _flat(value: Any, prefix: str = "") -> dict[str, float]:
    """The numbers in a (nested) result, keyed by their path."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix or "value": float(value)}
    if isinstance(value, (dict, list)):
        out: dict[str, float] = {}
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            out |= _flat(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {}


def _kwarg(text: str) -> tuple[str, Any]:
    key, _, raw = text.partition("=")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="MODULE.FUNCTION under benchmarks/")
    parser.add_argument("kwargs", nargs="*", help="key=value arguments of the function")
    parser.add_argument("--baseline-tree", required=True, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    module, function = args.target.rsplit(".", 1)
    kwargs = dict(_kwarg(k) for k in args.kwargs)
    best: dict[str, dict[str, float]] = {"after": {}, "before": {}}
    for _ in range(args.rounds):
        for who, tree in (("after", ""), ("before", args.baseline_tree)):
            for key, value in _flat(against.run(tree, module, function, **kwargs)).items():
                lower = _lower_is_better(key)
                kept = best[who].get(key, value)
                best[who][key] = min(kept, value) if lower else max(kept, value)
    print(f"# {args.target}({', '.join(args.kwargs)}) — {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"_this tree (after) vs {args.baseline_tree} (before), best of {args.rounds} "
        f"alternating rounds; {platform.platform()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}_\n"
    )
    print("| figure | before | after | × better |\n|---|---:|---:|---:|")
    for key, new in best["after"].items():
        old = best["before"].get(key)
        if old is None:
            print(f"| {key} | — | {_num(new)} | — |")
            continue
        ratio = (old / new if _lower_is_better(key) else new / old) if old and new else float("nan")
        print(f"| {key} | {_num(old)} | {_num(new)} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
