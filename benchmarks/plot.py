"""One picture of the comparison: heap per session against turns, every peer.

Log-log, because the peers span four orders of magnitude (our bounded state
stays flat in the tens of KiB while checkpointers grow with turns squared).
A line that stops early is a peer that hit its time or memory budget.

    python -m benchmarks.plot results.json [docs/heap_per_session.png]

replots the ``--json`` output of ``python -m benchmarks.compare``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OURS = "agentmem"
MARKERS = "os^vD<>ph*"


def plot(heap: dict[str, Any], path: str, skip: tuple[str, ...] = ()) -> None:
    """Write the heap-per-session chart to ``path`` (PNG, ~100 KB).

    ``skip`` leaves out rows whose memory another row already shows."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colors = plt.get_cmap("tab10").colors  # type: ignore[attr-defined]
    drawn = 0
    for name, result in heap.items():
        points = result.get("points") or {}
        if "error" in result or len(points) < 2 or name in skip:
            continue
        pairs = sorted((int(t), (p["python"] + p["sqlite"]) / 1024) for t, p in points.items())
        pairs = [(t, kib) for t, kib in pairs if kib > 0]  # SQLite's cache can dip early on
        ours = name == OURS
        ax.plot(
            [t for t, _ in pairs],
            [kib for _, kib in pairs],
            marker="o" if ours else MARKERS[drawn % len(MARKERS)],
            markersize=3,
            linewidth=3 if ours else 1.3,
            linestyle="-" if ours or drawn < len(colors) else "--",
            color="black" if ours else colors[drawn % len(colors)],
            label=result["label"] + (" (stopped: budget)" if result.get("stopped") else ""),
            zorder=3 if ours else 2,
        )
        drawn += 0 if ours else 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("turns per session (1 turn = 7 messages, 4 tool results of ~8 KB)")
    ax.set_ylabel("heap per session, KiB (tracemalloc + SQLite)")
    ax.set_title("Memory per conversation as it grows")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    with open(argv[0]) as source:
        results = json.load(source)
    target = argv[1] if len(argv) > 1 else "docs/heap_per_session.png"
    plot(results["heap"], target, skip=("sdk-sqlite-mem+trimmer",))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
