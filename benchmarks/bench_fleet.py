"""Load and soak: several ``jupyter-agentmem serve`` instances over one redis-server,
against the article's FastAPI ``/chat`` behind the same number of instances.

All on loopback: one redis-server (temporary directory, no persistence), the
loopback model server (a short answer in chunks), ``--instances`` server
processes, and this driver. ``--users`` virtual users each own a session and
take ``--turns`` turns with a random think time, every turn on an instance
picked at random (no sticky sessions); ``--hot`` clients hammer one shared
session at once (409s expected, nothing else). At the end every session is read
back (from a random instance) and its messages counted against what the
clients sent and received: lost messages must be 0.

The article's recipe keeps sessions in a per-process dict: a user who hops
instances has a different history on each; it is counted as lost what no single
instance holds (the best instance's count per session).

Reported per server: turns/s, p50/p99 to the first event and to the end, 409s,
errors, messages lost, RSS per instance (after warm-up and at the end), and for
ours Redis memory per session.

Run: ``python -m benchmarks.bench_fleet`` (bounded by ``--max-seconds``, default
240); ``--quick`` is the CI form (a few seconds of load).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from .bench_serve import free_port, start, stop
from .bench_serve import model_server as serve_model

ANSWER = "Foxes are small omnivores of the dog family; they live almost everywhere. " * 3
CHUNK = 23


def model_server(port: int, delay: float) -> None:
    """The model process (bench_serve's), with this load's shorter answer."""
    serve_model(port, delay, answer=ANSWER, chunk=CHUNK, tokens=50)


@dataclass
class Stats:
    first: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # session -> completed turns
    last: dict[str, str] = field(default_factory=dict)


async def turn(
    client: httpx.AsyncClient, base: str, kind: str, session: str, text: str, stats: Stats
) -> bool:
    """One POST /chat read to its end; True if the turn completed."""
    if kind == "ours":
        body: dict[str, Any] = {"session": session, "message": text}
    else:
        body = {"session_id": session, "message": text}
    start_at = time.perf_counter()
    first = None
    answer = []
    try:
        async with client.stream("POST", base + "/chat", json=body) as response:
            if response.status_code == 409:
                stats.conflicts += 1
                await response.aread()
                return False
            if response.status_code != 200:
                stats.errors.append(f"HTTP {response.status_code}")
                return False
            event = "message"
            async for line in response.aiter_lines():
                if first is None and line:
                    first = time.perf_counter() - start_at
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        continue
                    data = json.loads(payload)
                    if kind == "ours" and event == "delta":
                        answer.append(data["text"])
                    elif kind == "ours" and event == "error":
                        stats.errors.append(data["message"][:80])
                        return False
                    elif kind == "naive":
                        answer.append(data["content"])
    except httpx.HTTPError as exc:
        stats.errors.append(type(exc).__name__)
        return False
    if "".join(answer) != ANSWER:
        stats.errors.append("wrong answer text")
        return False
    stats.first.append(first or 0.0)
    stats.done.append(time.perf_counter() - start_at)
    stats.sent[session] = stats.sent.get(session, 0) + 1
    stats.last[session] = text
    return True


async def user(
    client: httpx.AsyncClient,
    bases: list[str],
    kind: str,
    i: int,
    turns: int,
    think: float,
    stop_at: float,
    stats: Stats,
    first_turn: int = 0,
) -> None:
    await asyncio.sleep(random.uniform(0, think))
    for t in range(first_turn, turns):
        if time.monotonic() > stop_at:
            return
        await turn(client, random.choice(bases), kind, f"user-{i}", f"u{i} turn {t}", stats)
        await asyncio.sleep(random.uniform(0, think))


async def hammer(
    client: httpx.AsyncClient, bases: list[str], kind: str, c: int, stop_at: float, stats: Stats
) -> None:
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        await turn(client, random.choice(bases), kind, "hot", f"hot {c}-{n}", stats)
        await asyncio.sleep(random.uniform(0, 0.05))


async def count_lost(client: httpx.AsyncClient, bases: list[str], kind: str, stats: Stats) -> int:
    """Messages the clients exchanged that no instance can show for their session."""
    lost = 0
    for session, done in stats.sent.items():
        if kind == "ours":
            view = (await client.get(random.choice(bases) + f"/sessions/{session}")).json()
            held = int(view["messages_total"])
            users = [m["content"] for m in view["messages"] if m["role"] == "user"]
            if session != "hot" and (not users or users[-1] != stats.last[session]):
                held = min(held, 2 * done - 2)  # the newest turn is not where it belongs
        else:
            views = [await client.get(base + f"/sessions/{session}") for base in bases]
            held = max(int(view.json()["messages"]) for view in views)
        lost += max(0, 2 * done - held)
    return lost


def sample_rss(pids: list[int], into: list[list[float]], stop_flag: list[bool]) -> None:
    while not stop_flag:
        into.append([psutil.Process(p).memory_info().rss / 2**20 for p in pids])
        time.sleep(1.0)


async def drive(
    bases: list[str], kind: str, pids: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    stats = Stats()
    rss: list[list[float]] = []
    stop_flag: list[bool] = []
    sampler = asyncio.get_running_loop().run_in_executor(None, sample_rss, pids, rss, stop_flag)
    started = time.monotonic()
    try:
        return await _drive(bases, kind, args, stats, rss, started)
    finally:
        stop_flag.append(True)
        await sampler


async def _drive(
    bases: list[str],
    kind: str,
    args: argparse.Namespace,
    stats: Stats,
    rss: list[list[float]],
    started: float,
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.users + args.hot + 10, max_keepalive_connections=200)
    stop_at = started + args.max_seconds
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        hot = [hammer(client, bases, kind, c, stop_at, stats) for c in range(args.hot)]
        hot_task = asyncio.gather(*hot)
        warm_turns = min(args.warmup, args.turns)
        if warm_turns:  # every session exists (and is warm somewhere) before RSS counts
            await asyncio.gather(
                *(
                    user(client, bases, kind, i, warm_turns, args.think, stop_at, stats)
                    for i in range(args.users)
                )
            )
        warm_at = len(rss)
        users = [
            user(client, bases, kind, i, args.turns, args.think, stop_at, stats, warm_turns)
            for i in range(args.users)
        ]
        await asyncio.gather(*users)
        elapsed = time.monotonic() - started
        hot_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hot_task
        await asyncio.sleep(0.5)  # the last runs store their turn
        lost = await count_lost(client, bases, kind, stats)
    if not args.warmup:
        warm_at = max(1, len(rss) // 5)
    warm = rss[min(len(rss) - 1, warm_at)] if rss else []
    after = rss[warm_at:] or rss[-1:]
    return {
        "kind": kind,
        "turns": len(stats.done),
        "seconds": round(elapsed, 1),
        "turns_per_s": round(len(stats.done) / elapsed, 1),
        "first_p50_ms": pct(stats.first, 50),
        "first_p99_ms": pct(stats.first, 99),
        "done_p50_ms": pct(stats.done, 50),
        "done_p99_ms": pct(stats.done, 99),
        "conflicts_409": stats.conflicts,
        "errors": len(stats.errors),
        "error_kinds": sorted(set(stats.errors))[:5],
        "lost": lost,
        "rss_warm_mib": [round(x) for x in warm],
        "rss_end_mib": [round(x) for x in rss[-1]] if rss else [],
        "rss_max_after_warm_mib": [round(max(col)) for col in zip(*after, strict=True)],
        "sessions": len(stats.sent),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1)


def redis_doc_bytes(port: int) -> int:
    """Mean ``MEMORY USAGE`` of the session documents (``agentmem:d:*``)."""
    import redis

    client = redis.Redis(port=port)
    sizes = [client.memory_usage(key) or 0 for key in client.scan_iter(match="agentmem:d:*")]
    client.close()
    return round(sum(sizes) / max(1, len(sizes)))


def redis_used(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, text=True, check=True
    )
    return int(
        next(
            line.split(":")[1]
            for line in out.stdout.splitlines()
            if line.startswith("used_memory:")
        )
    )


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="bench-fleet-")
    env = {**os.environ, "IPYTHONDIR": tmp, "JUPYTER_DATA_DIR": tmp, "PYTHONPATH": os.getcwd()}
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            tmp,
        ],
        stdout=subprocess.DEVNULL,
    )
    model_port = free_port()
    model = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_fleet",
            "--model-server",
            str(model_port),
            str(args.delay),
        ],
        env=env,
    )
    model_url = f"http://127.0.0.1:{model_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(model_url + "/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    env.update(OPENAI_BASE_URL=model_url + "/v1", OPENAI_API_KEY="sk-bench", AGENTMEM_MODEL="bench")
    store = f"redis://127.0.0.1:{redis_port}/0"
    rows = []
    try:
        for kind in ("ours", "naive"):
            procs, bases = [], []
            base_memory = redis_used(redis_port)
            for _ in range(args.instances):
                port = free_port()
                if kind == "ours":
                    cmd = [
                        sys.executable,
                        "-m",
                        "jupyter_agentmem",
                        "serve",
                        "--store",
                        store,
                        "--log-level",
                        "warning",
                    ]
                else:
                    cmd = [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "benchmarks.peers.naive_fleet:app",
                        "--log-level",
                        "warning",
                    ]
                procs.append(
                    start([*cmd, "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz")
                )
                bases.append(f"http://127.0.0.1:{port}")
            try:
                row = asyncio.run(drive(bases, kind, [p.pid for p in procs], args))
            finally:
                for proc in procs:
                    stop(proc)
            if kind == "ours":
                row["redis_bytes_per_session"] = round(
                    (redis_used(redis_port) - base_memory) / max(1, row["sessions"])
                )
                row["redis_doc_bytes"] = redis_doc_bytes(redis_port)
            rows.append(row)
    finally:
        for proc in (model, redis):
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.instances} instances, {args.users} users x {args.turns} turns "
        f"(think <= {args.think} s), {args.hot} hot clients, model chunk delay {args.delay} s",
        "",
        "| server | turns | turns/s | first event p50 / p99 ms | done p50 / p99 ms | 409s "
        "| errors | messages lost | RSS MiB per instance (warm -> end, max after warm) "
        "| Redis per session: all / document |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        name = (
            "jupyter-agentmem serve + Redis"
            if r["kind"] == "ours"
            else "article's FastAPI /chat (dict)"
        )
        triples = zip(
            r["rss_warm_mib"], r["rss_end_mib"], r["rss_max_after_warm_mib"], strict=False
        )
        rss = ", ".join(f"{a} -> {b} (max {c})" for a, b, c in triples)
        lines.append(
            f"| {name} | {r['turns']} | {r['turns_per_s']} "
            f"| {r['first_p50_ms']} / {r['first_p99_ms']} "
            f"| {r['done_p50_ms']} / {r['done_p99_ms']} | {r['conflicts_409']} "
            f"| {r['errors']} | {r['lost']} | {rss} "
            f"| {r.get('redis_bytes_per_session', '-')} / {r.get('redis_doc_bytes', '-')} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--model-server":
        model_server(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--think", type=float, default=2.0, help="Max seconds between turns.")
    parser.add_argument("--hot", type=int, default=4, help="Clients sharing one session.")
    parser.add_argument("--delay", type=float, default=0.01, help="Seconds between model chunks.")
    parser.add_argument(
        "--max-seconds", type=float, default=240.0, help="No turn starts after this."
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="Turns every user takes before RSS 'warm' is sampled (0: a fifth of the run).",
    )
    parser.add_argument("--quick", action="store_true", help="CI form: 20 users x 3 turns.")
    parser.add_argument("--json", help="Also write the rows to this file.")
    args = parser.parse_args()
    if args.quick:
        args.users, args.turns, args.think, args.hot, args.max_seconds = 20, 3, 0.2, 3, 20.0
    rows = run(args)
    print(table(rows, args))
    for r in rows:
        if r["errors"]:
            print(f"{r['kind']}: errors {r['error_kinds']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
