"""jupyter-agentmem side by side with the memory designs users would pick instead.

Run from the repository root, peers installed from ``benchmarks/requirements.txt``::

    python -m benchmarks.compare            # full run (~15 minutes on 2 cores)
    python -m benchmarks.compare --quick    # 50 turns, small counts (~3 minutes)

Same workload for everyone (``benchmarks/workload.py``): a turn is a 200-char
user message, an assistant message with 4 tool calls, 4 distinct JSON tool
results (a dict holding ~95 rows) and a 500-char answer, with the model called
twice per turn. Every figure comes from this run; each measurement runs in its
own subprocess (clean RSS, imports not charged to sessions). Memory runs go two
at a time (memory figures do not depend on CPU contention); timings run one at
a time, best of 3. Peers that would blow the time or memory budget stop early
and the tables say where. Markdown tables go to stdout, the plot to
``docs/heap_per_session.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psutil

from .peers import PEERS, SWEEPS, report

GiB = 1024**3


@dataclass(frozen=True)
class Settings:
    """Sizes and budgets of one run (full or ``--quick``)."""

    turns: int = 500
    heap_budget_s: float = 60.0
    heap_cap: int = int(1.5 * GiB)
    rss_sessions: int = 1000
    rss_big: int = 10_000
    rss_budget_s: float = 30.0
    rss_ours_budget_s: float = 120.0
    rss_big_budget_s: float = 420.0
    rss_cap: int = 3 * GiB
    speed_sessions: int = 5
    speed_turns: int = 20
    repeats: int = 3
    persist_budget_s: float = 20.0
    sweep_turns: int = 24


QUICK = Settings(
    turns=50,
    heap_budget_s=20.0,
    rss_sessions=200,
    rss_big=0,
    rss_budget_s=15.0,
    rss_ours_budget_s=30.0,
    speed_sessions=3,
    speed_turns=10,
    repeats=1,
    persist_budget_s=8.0,
    sweep_turns=12,
)

#: Sessions per heap run: more where a session is cheap (less noise), one where a
#: session costs seconds per turn or grows with turns squared.
HEAP_SESSIONS = {
    "agentmem": 10,
    "naive": 2,
    "article": 4,
    "lc-trim": 3,
    "sdk-compaction": 2,
}
#: Sessions (and turns) of the persistence runs, per persistent peer.
PERSIST_SESSIONS = {"agentmem-sqlite": 200, "article": 50, "sdk-sqlite-file": 20, "lg-sqlite": 5}
#: Peers measured for context/orphans only (their memory equals another row's).
CONTEXT_ONLY = {"sdk-sqlite-mem+trimmer": "sdk-sqlite-mem"}


def child(kind: str, tree: str = "", **args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON result; ``tree``:
    import jupyter_agentmem from that checkout instead (a baseline in the same run)."""
    command = [sys.executable, "-m", "benchmarks.compare", "--child", kind, json.dumps(args)]
    env, cwd = None, None
    if tree:  # ``-m`` puts the working directory first on sys.path: run from the tree
        cwd = os.path.abspath(tree)
        path = [cwd, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_child(kind: str, args: str) -> None:
    from .peers import measure

    result = getattr(measure, kind)(**json.loads(args))
    print(json.dumps(result))


def parallel(jobs: int, tasks: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda task: child(task[0], **task[1]), tasks))


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Peers whose packages import; the others with the reason."""
    ok, missing = [], {}
    for name in names:
        try:
            PEERS[name]()
            ok.append(name)
        except ImportError as exc:
            missing[name] = str(exc)
    return ok, missing


def measure_all(names: list[str], s: Settings, jobs: int) -> dict[str, Any]:
    """Every measurement, memory runs in parallel, timings one at a time."""
    heap_names = [n for n in names if n != "agentmem-sqlite"]
    heap_tasks = [
        (
            "heap",
            {
                "name": n,
                "sessions": HEAP_SESSIONS.get(n, 1),
                "turns": 50 if n in CONTEXT_ONLY else s.turns,
                "budget_s": s.heap_budget_s,
                "cap_bytes": s.heap_cap,
            },
        )
        for n in heap_names
    ]
    speed_names = [n for n in names if n not in CONTEXT_ONLY]
    rss_names = [n for n in speed_names if n != "agentmem-sqlite"]
    rss_tasks = [
        (
            "rss",
            {
                "name": n,
                "sessions": s.rss_sessions,
                "turns": 50,
                "budget_s": s.rss_ours_budget_s if n == "agentmem" else s.rss_budget_s,
                "cap_bytes": s.rss_cap,
            },
        )
        for n in rss_names
    ]
    sweep_tasks = [
        ("orphans", {"name": n, "variants": SWEEPS[n], "turns": s.sweep_turns})
        for n in names
        if n in SWEEPS
    ]
    tasks = heap_tasks + rss_tasks + sweep_tasks
    if s.rss_big and "agentmem" in names:
        ours_big = {
            "name": "agentmem",
            "sessions": s.rss_big,
            "turns": 50,
            "budget_s": s.rss_big_budget_s,
            "cap_bytes": s.rss_cap,
        }
        tasks.append(("rss", ours_big))
    tasks.sort(key=_longest_first)
    started = time.perf_counter()
    results = dict(zip(map(_key, tasks), parallel(jobs, tasks), strict=True))
    big, skipped = big_runs(results, rss_names, s)
    results.update(zip(map(_key, big), parallel(jobs, big), strict=True))
    memory_s = time.perf_counter() - started
    speed = {
        n: child(
            "speed",
            name=n,
            sessions=s.speed_sessions,
            turns=s.speed_turns,
            repeats=s.repeats,
        )
        for n in speed_names
    }
    persist = {
        n: child(
            "persist",
            name=n,
            sessions=PERSIST_SESSIONS[n] if s is not QUICK else max(2, PERSIST_SESSIONS[n] // 5),
            turns=50,
            budget_s=s.persist_budget_s,
        )
        for n in names
        if n in PERSIST_SESSIONS
    }
    return {
        "heap": {k[1]: v for k, v in results.items() if k[0] == "heap"},
        "rss": _by_sessions({k[1:]: v for k, v in results.items() if k[0] == "rss"}),
        "rss_skipped": skipped,
        "orphans": {k[1]: v for k, v in results.items() if k[0] == "orphans"},
        "speed": speed,
        "persist": persist,
        "memory_phase_s": memory_s,
    }


def big_runs(
    results: dict[tuple[Any, ...], Any], names: list[str], s: Settings
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """The 10,000-session runs of the peers whose 1,000-session run fit its budget and
    whose projection (time and RSS × 10) fits the big run's budget; why not otherwise."""
    tasks: list[tuple[str, dict[str, Any]]] = []
    skipped: dict[str, str] = {}
    for name in names:
        small = results.get(("rss", name, s.rss_sessions))
        if not s.rss_big or name == "agentmem" or not small or "error" in small:
            continue
        if small["sessions"] < small["requested"]:
            continue  # its 1,000-session row already says where it stopped
        factor = s.rss_big / small["sessions"]
        seconds, grown = small["seconds"] * factor, small["rss_growth"] * factor
        if seconds > s.rss_big_budget_s or grown > s.rss_cap:
            skipped[name] = f"projected {seconds:,.0f} s and {grown / GiB:,.1f} GiB RSS"
            continue
        args = {
            "name": name,
            "sessions": s.rss_big,
            "turns": 50,
            "budget_s": s.rss_big_budget_s,
            "cap_bytes": s.rss_cap,
        }
        tasks.append(("rss", args))
    return tasks, skipped


def _longest_first(task: tuple[str, dict[str, Any]]) -> int:
    """Start the long runs first so the pool's two workers finish together."""
    kind, args = task
    if kind == "rss" and args["sessions"] > 1000:
        return 0
    return {"heap": 1, "rss": 2}.get(kind, 3)


def _by_sessions(rss: dict[tuple[Any, ...], Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for (name, sessions), result in rss.items():
        grouped.setdefault(name, {})[str(sessions)] = result
    return grouped


def _key(task: tuple[str, dict[str, Any]]) -> tuple[Any, ...]:
    kind, args = task
    return (kind, args["name"], args["sessions"]) if kind == "rss" else (kind, args["name"])


def speed_only(args: argparse.Namespace) -> int:
    """The whole-turn throughput table alone (a few minutes, not the full comparison):
    each peer in turn, ours (and the baseline checkout) timed again between the peers,
    so that load from other jobs hits every row alike; best of each."""
    s = QUICK if args.quick else Settings()
    names, missing = available(args.peers.split(",") if args.peers else list(PEERS))
    names = [n for n in names if n not in CONTEXT_ONLY]
    size = {"sessions": s.speed_sessions, "turns": s.speed_turns, "repeats": s.repeats}
    speed: dict[str, Any] = {}

    def keep(key: str, result: dict[str, Any]) -> None:
        old = speed.get(key, {}).get("messages_per_s", 0)
        if "error" in result or result["messages_per_s"] >= old:
            speed[key] = result

    for name in names:
        for ours in ("agentmem", name) if name != "agentmem" else ("agentmem",):
            keep(ours, child("speed", name=ours, **size))
            if args.baseline_tree and ours == "agentmem":
                base = child("speed", tree=args.baseline_tree, name="agentmem", **size)
                if "error" not in base:
                    base["label"] = f"jupyter-agentmem at {args.baseline_tree} (before)"
                keep("baseline", base)
    print(f"# Whole-turn throughput — {time.strftime('%Y-%m-%d')}")
    print(
        f"_{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / GiB:.0f} GiB RAM; {s.speed_sessions} sessions x "
        f"{s.speed_turns} turns, best of {s.repeats} per run; unavailable: {missing or 'none'}_\n"
    )
    print(report.speed_section(speed))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(speed, out, indent=1, default=str)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 turns, small counts")
    parser.add_argument("--peers", help="comma-separated subset (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="memory runs in parallel")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--plot", default="docs/heap_per_session.png", help="'' to skip")
    parser.add_argument(
        "--only", choices=["speed"], help="run only this table (e.g. the whole-turn throughput)"
    )
    parser.add_argument(
        "--baseline-tree",
        metavar="PATH",
        help="with --only speed: also time our engine from this checkout (before/after)",
    )
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(*args.child)
        return 0
    if args.only == "speed":
        return speed_only(args)
    settings = QUICK if args.quick else Settings()
    names = args.peers.split(",") if args.peers else list(PEERS)
    names, missing = available(names)
    started = time.perf_counter()
    print(f"# jupyter-agentmem vs peers — {time.strftime('%Y-%m-%d')}")
    print(
        f"_{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / GiB:.0f} GiB RAM; "
        f"{'quick' if args.quick else 'full'} run_\n"
    )
    results = measure_all(names, settings, args.jobs)
    results["missing"] = missing
    results["settings"] = settings.__dict__
    results["total_s"] = time.perf_counter() - started
    print(report.render(results, settings.turns))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1, default=str)
    if args.plot:
        from .plot import plot

        plot(results["heap"], args.plot, skip=tuple(CONTEXT_ONLY))
        print(f"\nPlot: `{args.plot}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
