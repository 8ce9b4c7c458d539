"""Where a whole turn goes: our engine with its truncator, with the truncator's work
taken away step by step, and the article's recipe and the naive list beside it.

    python -m benchmarks.bench_turn [--rounds 5]

Same harness as ``compare --only speed`` (``benchmarks/peers``: 5 sessions x 20
turns of the workload, raw ~7.6 KB tool results, the context built twice per
turn). The variants replace ``ToolOutputTruncator.truncate_ex`` in this process
only, each returning the real truncation (computed once per pool text before the
clock starts), so everything but the truncator's own work is identical:

* ``agentmem``: the real truncator;
* ``agentmem, parse only``: only what any truncator that promises valid JSON and
  an exact count of what it cut must do, read the whole text (``fastjson``: the
  19-digit check, orjson, freeing the value);
* ``agentmem, no truncation work``: nothing at all (the engine's own cost);
* ``article``, ``naive``: the peers as ``compare`` runs them.

Why: it shows how far the truncator's Python is from the floor of reading the
text, and what the engine costs without it. Rounds alternate the variants (the
load of a shared box moves); the table keeps the best round of each.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

from jupyter_agentmem import fastjson
from jupyter_agentmem.memory import truncate

from .peers import make
from .peers.measure import MESSAGES_PER_TURN, raw_texts, turns_per_s

Variant = Callable[[Any, object], truncate.TruncationResult]


def _variants(texts: list[str]) -> dict[str, tuple[str, Variant | None]]:
    real = truncate.ToolOutputTruncator.truncate_ex
    done = {t: real(truncate.ToolOutputTruncator(), t) for t in texts}

    def parse_only(self: Any, output: object) -> truncate.TruncationResult:
        assert isinstance(output, str)
        fastjson.try_loads(output.encode())
        return done[output]

    def no_work(self: Any, output: object) -> truncate.TruncationResult:
        return done[output]  # type: ignore[index]

    return {
        "agentmem": ("agentmem", None),
        "agentmem, parse only": ("agentmem", parse_only),
        "agentmem, no truncation work": ("agentmem", no_work),
        "article": ("article", None),
        "naive": ("naive", None),
    }


def run(peer_name: str, variant: Variant | None, texts: list[str], sessions: int = 5) -> float:
    """Messages per second of one round (``turns=20``, as ``compare --only speed``)."""
    real = truncate.ToolOutputTruncator.truncate_ex
    if variant is not None:
        truncate.ToolOutputTruncator.truncate_ex = variant  # type: ignore[method-assign,assignment]
    try:
        return turns_per_s(make(peer_name), sessions, 20, texts) * MESSAGES_PER_TURN
    finally:
        truncate.ToolOutputTruncator.truncate_ex = real  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    texts = raw_texts()
    variants = _variants(texts)
    best = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):
        for name, (peer, variant) in variants.items():
            best[name] = max(best[name], max(run(peer, variant, texts) for _ in range(3)))
    print(f"# Whole turn, taken apart — {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"_{platform.platform()}, Python {platform.python_version()}; best of {args.rounds}_\n")
    print("| variant | messages/s | µs per turn | ÷ agentmem |")
    print("|---|---:|---:|---:|")
    for name, rate in best.items():
        turn_us = MESSAGES_PER_TURN / rate * 1e6
        print(f"| {name} | {rate:,.0f} | {turn_us:,.0f} | {rate / best['agentmem']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
