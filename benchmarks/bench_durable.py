"""Durable turns: what the turn log costs per turn, durability on vs off, side by side.

Run from the repository root (needs ``redis-server`` on PATH for the Redis rows; it
starts its own on a free port, loopback, no persistence: the server's own fsync
policy is the operator's choice and is not measured here)::

    python -m benchmarks.bench_durable            # ~30 s
    python -m benchmarks.bench_durable --quick    # a smoke test

What is measured, for SQLite (the default store, a file in a temp dir) and Redis:

* **per turn in the caller**: one ``%%agent`` turn as the Agent stores it
  (``state.add_messages`` of a user message, an assistant message with 4 tool
  calls, 4 truncated tool results and the answer, ``tests/workload.py``), over
  50 sessions round robin. This is what streaming could ever wait for; the log
  write itself runs on the background writer.
* **per turn until on disk**: the same plus ``manager.sync_log()``, which the
  ``%%agent`` cell calls before it ends, so this is the whole cost a cell sees.
* **add_message/s**: single small messages, with durability off, on (caller side)
  and on until committed (``sync_log`` after the last one).
* the writer's group commits: messages per commit, and the largest backlog seen.

Each figure is the median of 5 batches; "off" is ``durable_turns=False`` on the
same store in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.stores import SQLiteStore
from jupyter_agentmem.stores.base import SessionStore
from tests.redis_server import RedisServer, find_redis_server
from tests.workload import tool_result, turn_messages

SESSIONS = 50


def one_turn(turn: int) -> list[dict[str, Any]]:
    """A stored turn like the Agent's: tool results already truncated to 2,000 chars."""
    messages = turn_messages(turn, tool_output="{}")
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            message["content"] = tool_result(turn, i)[:2000]
    return messages


def per_turn(make: Callable[[], SessionStore], durable: bool, turns: int, sync: bool) -> float:
    """Median ms per turn over 5 batches."""
    manager = SessionManager(store=make(), durable_turns=durable)
    batches = []
    prepared = [one_turn(t) for t in range(turns)]
    for _ in range(5):
        start = time.perf_counter()
        for t, messages in enumerate(prepared):
            manager.get_or_create(f"s{t % SESSIONS}").add_messages([dict(m) for m in messages])
            if sync:
                manager.sync_log()
        batches.append((time.perf_counter() - start) * 1000 / turns)
    manager.close()
    return statistics.median(batches)


def add_rate(make: Callable[[], SessionStore], durable: bool, count: int, sync: bool) -> float:
    manager = SessionManager(store=make(), durable_turns=durable, max_recent=1_000_000)
    state = manager.get_or_create("rate")
    rates = []
    for batch in range(5):
        start = time.perf_counter()
        for i in range(count):
            state.add_message({"role": "user", "content": f"message {batch}-{i}"})
        if sync:
            manager.sync_log(None)
        rates.append(count / (time.perf_counter() - start))
        manager.flush()  # keep the log short between batches, like a checkpoint would
    manager.close()
    return statistics.median(rates)


def commits(make: Callable[[], SessionStore], turns: int) -> tuple[float, int]:
    """Messages per group commit and the largest backlog, turns added as fast as possible."""
    manager = SessionManager(store=make(), durable_turns=True)
    journal = manager.journal
    assert journal is not None
    backlog = 0
    messages = 0
    for t in range(turns):
        batch = one_turn(t)
        manager.get_or_create(f"s{t % SESSIONS}").add_messages(batch)
        messages += len(batch)
        backlog = max(backlog, journal.backlog)
    manager.sync_log(None)
    per_commit = messages / max(1, journal.commits)
    manager.close()
    return per_commit, backlog


def run(name: str, make: Callable[[], SessionStore], quick: bool) -> dict[str, Any]:
    turns = 100 if quick else 400
    count = 1_000 if quick else 5_000
    row: dict[str, Any] = {"store": name}
    row["turn_off"] = per_turn(make, False, turns, sync=False)
    row["turn_on"] = per_turn(make, True, turns, sync=False)
    row["turn_on_synced"] = per_turn(make, True, turns, sync=True)
    row["add_off"] = add_rate(make, False, count, sync=False)
    row["add_on"] = add_rate(make, True, count, sync=False)
    row["add_on_synced"] = add_rate(make, True, count, sync=True)
    row["per_commit"], row["backlog"] = commits(make, turns)
    return row


def report(rows: list[dict[str, Any]]) -> None:
    print(f"Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    print("| metric | " + " | ".join(r["store"] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    lines = [
        ("turn, durability off (ms)", "turn_off", "{:.3f}"),
        ("turn, on: caller side (ms)", "turn_on", "{:.3f}"),
        ("turn, on: until on disk, as a cell waits (ms)", "turn_on_synced", "{:.3f}"),
        ("added per turn, caller side (ms)", None, "{:+.3f}"),
        ("added per turn, until on disk (ms)", None, "{:+.3f}"),
        ("add_message/s, off", "add_off", "{:,.0f}"),
        ("add_message/s, on (caller side)", "add_on", "{:,.0f}"),
        ("add_message/s, on, all committed", "add_on_synced", "{:,.0f}"),
        ("messages per group commit (turns back to back)", "per_commit", "{:.1f}"),
        ("largest writer backlog (messages)", "backlog", "{:,}"),
    ]
    for label, key, fmt in lines:
        if key is None:
            field = "turn_on" if "caller" in label else "turn_on_synced"
            cells = [fmt.format(r[field] - r["turn_off"]) for r in rows]
        else:
            cells = [fmt.format(r[key]) for r in rows]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**6))

        def sqlite() -> SessionStore:
            return SQLiteStore(Path(tmp) / f"bench{next(counter)}.sqlite3")

        rows.append(run("SQLite (WAL)", sqlite, args.quick))
        executable = find_redis_server()
        if executable is None:
            print("redis-server not found: Redis rows skipped")
        else:
            (Path(tmp) / "redis").mkdir()
            with RedisServer(executable, Path(tmp) / "redis") as server:
                from jupyter_agentmem.stores.redis import RedisStore

                def redis_store() -> SessionStore:
                    return RedisStore(server.url, prefix=f"b{next(counter)}:")

                rows.append(run("Redis", redis_store, args.quick))
    report(rows)


if __name__ == "__main__":
    main()
