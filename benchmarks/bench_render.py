"""Streaming benchmark: what the %%agent rendering path costs on top of the SDK.

One long answer (200 KB in 20-char chunks, ~10,000 SSE chunks) from the loopback
server, consumed three ways in the same run, interleaved (one of each per round, so load
shifts hit all three alike), best of N rounds by wall time and by process CPU time:

1. raw ``openai`` SDK iteration (the floor: HTTP + SSE parsing + pydantic);
2. our provider adapter (``llm.stream_chat`` events);
3. the full path under ``%%agent``: ``Agent.chat`` (session, commit) feeding a
   ``CellRenderer`` whose display/update callables JSON-encode every bundle as
   the kernel would before sending it on IOPub.

The CPU ratio is the steadier one on a shared box (it includes the in-process
loopback server, the same work for every path). "worst round" is the largest
ratio to the raw SDK within any one round.

Run: ``python -m benchmarks.bench_render [rounds]`` (default 5). Run the file with
``PYTHONPATH`` pointing at another checkout to time that checkout's code.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import openai

from jupyter_agentmem import Agent, SessionManager
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.model.adapter import TextDelta, stream_chat
from jupyter_agentmem.notebook.render import CellRenderer
from jupyter_agentmem.stores import MemoryStore
from jupyter_agentmem.testing import FakeModelServer

ANSWER = ("The quick brown fox jumps over the lazy dog. " * 4 + "\n") * 1130  # ~200 KB
CHUNK = 20
SHORT = "A short answer, shown as soon as its first words arrive."
FIRST_ROUNDS = 40
MESSAGES = [{"role": "user", "content": "a long answer please"}]


class Sink:
    """Stands in for IOPub: records when and how much each display message carries."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.bytes = 0

    def __call__(self, bundle: dict[str, str], **kwargs: Any) -> Any:
        self.times.append(time.perf_counter())
        self.bytes += len(json.dumps(bundle))

        class Handle:
            display_id = "bench"

        return Handle()


def timed(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """One run of ``fn`` with its wall time (``seconds``) and process CPU time (``cpu``)."""
    cpu = time.process_time()
    result = fn()
    result["cpu"] = time.process_time() - cpu
    return result


def main() -> None:
    server = FakeModelServer(default=None).start()
    client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
    chunks = len(ANSWER) // CHUNK + 1

    def raw(answer: str = ANSWER) -> dict[str, float]:
        server.enqueue_text(answer, chunk_size=CHUNK, usage=False)
        started = time.perf_counter()
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        first = 0.0
        text = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                if not first:
                    first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        assert "".join(text) == answer, "raw SDK lost text"
        return {"seconds": elapsed, "first": first}

    def adapter(answer: str = ANSWER) -> dict[str, float]:
        server.enqueue_text(answer, chunk_size=CHUNK)
        started = time.perf_counter()
        first = 0.0
        text = []
        for event in stream_chat(client, model="m", messages=MESSAGES):
            if isinstance(event, TextDelta):
                text.append(event.text)
                if not first:
                    first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        assert "".join(text) == answer, "adapter lost text"
        return {"seconds": elapsed, "first": first}

    config = AgentMem(base_url=server.base_url, model="m", summarizer="extractive")
    agent = Agent(SessionManager(store=MemoryStore()), config)

    def full(answer: str = ANSWER) -> dict[str, float]:
        server.enqueue_text(answer, chunk_size=CHUNK)
        sink = Sink()
        started = time.perf_counter()
        renderer = CellRenderer("m · session bench", display=sink, update=sink)
        response = agent.chat("a long answer please", session="bench", tools=False)
        for event in response.events():
            renderer.feed(event)
        renderer.finish(response)
        elapsed = time.perf_counter() - started
        assert "".join(renderer.text) == answer, "the %%agent path lost text"
        updates = len(sink.times) - 2  # minus the first display and the final emptying update
        return {
            "seconds": elapsed,
            "first": sink.times[1] - started if len(sink.times) > 1 else 0.0,
            # over at least 1 s, as tests/test_agent_magic.py does: jupyter_server averages
            # over a 3 s window, so a burst shorter than a second is not its rate
            "updates_per_s": updates / max(elapsed, 1.0),
            "bytes_per_s": sink.bytes / max(elapsed, 1.0),
            "updates": updates,
        }

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    paths = {"raw openai SDK": raw, "stream_chat adapter": adapter, "Agent + CellRenderer": full}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            runs[name].append(timed(fn))
    firsts: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(FIRST_ROUNDS):  # first visible text of a short answer, interleaved
        for name, fn in paths.items():
            firsts[name].append(fn(SHORT)["first"])
    agent.close()
    server.stop()
    report(runs, chunks, rounds)
    report_first(firsts)
    r_full = min(runs["Agent + CellRenderer"], key=lambda r: r["seconds"])
    print(
        f"\ndisplay updates: {r_full['updates']:.0f} in total, "
        f"{r_full['updates_per_s']:.1f}/s over max(answer time, 1 s) (limit ~20/s); "
        f"bytes re-sent {r_full['bytes_per_s'] / 1e3:,.0f} KB/s (limit 500 KB/s; "
        "jupyter_server drops above 1,000 msg/s or 1 MB/s)"
    )


def report_first(firsts: dict[str, list[float]]) -> None:
    """Time to the first visible text of a short answer: median and p90 over the rounds."""
    print(f"\nfirst text of a {len(SHORT)}-char answer, {FIRST_ROUNDS} interleaved rounds:\n")
    print("| path | median ms | p90 ms | median vs raw |")
    print("|---|---:|---:|---:|")
    raw = statistics.median(firsts["raw openai SDK"])
    for name, times in firsts.items():
        ordered = sorted(times)
        median = statistics.median(ordered)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        print(f"| {name} | {median * 1e3:.2f} | {p90 * 1e3:.2f} | {median / raw:.3f}x |")


def report(runs: dict[str, list[dict[str, float]]], chunks: int, rounds: int) -> None:
    """The table: best wall and CPU time per path, ratios to the raw SDK, worst round."""
    import jupyter_agentmem

    print(f"# %%agent streaming benchmark — {time.strftime('%Y-%m-%d')}")
    print(f"code: {jupyter_agentmem.__file__}")
    print(
        f"answer {len(ANSWER):,} chars in {chunks:,} chunks of {CHUNK} chars; "
        f"best of {rounds} interleaved rounds\n"
    )
    print(
        "| path | wall s | chunks/s | wall vs raw | CPU s | CPU vs raw | "
        "worst round wall / CPU | first text ms (best / worst) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    raw = runs["raw openai SDK"]
    best_raw = {k: min(r[k] for r in raw) for k in ("seconds", "cpu")}
    for name, results in runs.items():
        wall = min(r["seconds"] for r in results)
        cpu = min(r["cpu"] for r in results)
        worst_wall = max(r["seconds"] / b["seconds"] for r, b in zip(results, raw, strict=True))
        worst_cpu = max(r["cpu"] / b["cpu"] for r, b in zip(results, raw, strict=True))
        firsts = [r["first"] * 1e3 for r in results]
        print(
            f"| {name} | {wall:.2f} | {chunks / wall:,.0f} | {wall / best_raw['seconds']:.3f}x | "
            f"{cpu:.2f} | {cpu / best_raw['cpu']:.3f}x | {worst_wall:.3f}x / {worst_cpu:.3f}x | "
            f"{min(firsts):.1f} / {max(firsts):.1f} |"
        )


if __name__ == "__main__":
    main()
