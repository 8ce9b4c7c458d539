"""Streaming benchmark: what the %%agent rendering path costs on top of the SDK.

One long answer (200 KB in 20-char chunks, ~10,000 SSE chunks) from the loopback
server, consumed three ways in the same run, best of 3 each:

1. raw ``openai`` SDK iteration (the floor: HTTP + SSE parsing + pydantic);
2. our provider adapter (``llm.stream_chat`` events);
3. the full path under ``%%agent``: ``Agent.chat`` (session, commit) feeding a
   ``CellRenderer`` whose display/update callables JSON-encode every bundle as
   the kernel would before sending it on IOPub.

Run: ``python -m benchmarks.bench_render``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import openai

from jupyter_agentmem import Agent, SessionManager
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.model.adapter import stream_chat
from jupyter_agentmem.notebook.render import CellRenderer
from jupyter_agentmem.stores import MemoryStore
from jupyter_agentmem.testing import FakeModelServer

ANSWER = ("The quick brown fox jumps over the lazy dog. " * 4 + "\n") * 1130  # ~200 KB
CHUNK = 20
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


def best_of(runs: int, fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [fn() for _ in range(runs)]
    return min(results, key=lambda r: r["seconds"])


def main() -> None:
    server = FakeModelServer(default=None).start()
    client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
    chunks = len(ANSWER) // CHUNK + 1

    def raw() -> dict[str, float]:
        server.enqueue_text(ANSWER, chunk_size=CHUNK, usage=False)
        started = time.perf_counter()
        stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        first = 0.0
        for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        return {"seconds": time.perf_counter() - started, "first": first}

    def adapter() -> dict[str, float]:
        server.enqueue_text(ANSWER, chunk_size=CHUNK)
        started = time.perf_counter()
        first = 0.0
        for _ in stream_chat(client, model="m", messages=MESSAGES):
            if not first:
                first = time.perf_counter() - started
        return {"seconds": time.perf_counter() - started, "first": first}

    config = AgentMem(base_url=server.base_url, model="m", summarizer="extractive")
    agent = Agent(SessionManager(store=MemoryStore()), config)

    def full() -> dict[str, float]:
        server.enqueue_text(ANSWER, chunk_size=CHUNK)
        sink = Sink()
        started = time.perf_counter()
        renderer = CellRenderer("m · session bench", display=sink, update=sink)
        response = agent.chat("a long answer please", session="bench", tools=False)
        for event in response.events():
            renderer.feed(event)
        renderer.finish(response)
        elapsed = time.perf_counter() - started
        updates = len(sink.times) - 2  # minus the first display and the final emptying update
        return {
            "seconds": elapsed,
            "first": sink.times[1] - started if len(sink.times) > 1 else 0.0,
            "updates_per_s": updates / elapsed,
            "bytes_per_s": sink.bytes / elapsed,
            "updates": updates,
        }

    r_raw, r_adapter, r_full = best_of(3, raw), best_of(3, adapter), best_of(3, full)
    agent.close()
    server.stop()
    print(f"# %%agent streaming benchmark — {time.strftime('%Y-%m-%d')}")
    print(f"answer {len(ANSWER):,} chars in {chunks:,} chunks of {CHUNK} chars; best of 3\n")
    print("| path | seconds | chunks/s | vs raw SDK | first text (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in (
        ("raw openai SDK", r_raw),
        ("stream_chat adapter", r_adapter),
        ("Agent + CellRenderer", r_full),
    ):
        print(
            f"| {name} | {r['seconds']:.2f} | {chunks / r['seconds']:,.0f} | "
            f"{r['seconds'] / r_raw['seconds']:.2f}x | {r['first'] * 1e3:.1f} |"
        )
    print(
        f"\ndisplay updates: {r_full['updates']:.0f} in total, "
        f"{r_full['updates_per_s']:.1f}/s (limit ~20/s); "
        f"bytes re-sent {r_full['bytes_per_s'] / 1e3:,.0f} KB/s (limit 500 KB/s; "
        "jupyter_server drops above 1,000 msg/s or 1 MB/s)"
    )


if __name__ == "__main__":
    main()
