"""Concurrent streaming benchmark: ``astream_chat`` against raw ``openai`` SDK iteration.

What the serve path asks of the adapter: many streams at once on one event loop.
A model server process (the loopback server of ``bench_serve``: a 2,000-char
answer in 100 chunks, 2.5 ms apart) and this driver, which opens ``--streams``
concurrent streams over ``--ramp`` seconds, in rounds alternating the raw SDK's
``AsyncStream`` (pydantic chunks) and our ``astream_chat`` (the same request, the
body read as SSE lines into plain dicts). Reported per path: time to the first
text p50 / p99 (median over rounds) and the driver's CPU time.

Run: ``python -m benchmarks.bench_astream [--streams 100] [--rounds 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from typing import Any

import openai

from benchmarks.bench_serve import ANSWER, model_server
from jupyter_agentmem.model.adapter import TextDelta, astream_chat

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


async def first_text(kind: str, client: openai.AsyncOpenAI) -> float:
    """Seconds from the request to the first text of one stream, read to the end."""
    started = time.perf_counter()
    first = 0.0
    text: list[str] = []
    if kind == "raw openai SDK":
        stream = await client.chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
                first = first or time.perf_counter() - started
    else:
        async for event in astream_chat(client, model="m", messages=MESSAGES):
            if isinstance(event, TextDelta):
                text.append(event.text)
                first = first or time.perf_counter() - started
    assert "".join(text) == ANSWER, f"{kind} lost text"
    return first


async def one_round(kind: str, port: int, streams: int, ramp: float) -> list[float]:
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0
    )
    tasks = []
    for _ in range(streams):
        tasks.append(asyncio.create_task(first_text(kind, client)))
        await asyncio.sleep(ramp / streams)
    firsts = await asyncio.gather(*tasks)
    await client.close()
    return sorted(firsts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--ramp", type=float, default=1.0)
    args = parser.parse_args()
    port = free_port()
    model = multiprocessing.Process(target=model_server, args=(port, 0.0025), daemon=True)
    model.start()
    time.sleep(1.5)
    kinds = ["raw openai SDK", "astream_chat adapter"]
    p50: dict[str, list[float]] = {k: [] for k in kinds}
    p99: dict[str, list[float]] = {k: [] for k in kinds}
    cpu = dict.fromkeys(kinds, 0.0)
    try:
        for n in range(args.rounds):
            for kind in kinds if n % 2 == 0 else kinds[::-1]:
                started = time.process_time()
                firsts = asyncio.run(one_round(kind, port, args.streams, args.ramp))
                cpu[kind] += time.process_time() - started
                p50[kind].append(statistics.median(firsts))
                p99[kind].append(firsts[int(0.99 * (len(firsts) - 1))])
    finally:
        model.terminate()
        model.join()
    print(f"# concurrent streaming — {time.strftime('%Y-%m-%d')}")
    print(
        f"{args.streams} streams over {args.ramp:g} s, {args.rounds} alternating rounds; "
        f"{len(ANSWER):,}-char answer in 100 chunks 2.5 ms apart\n"
    )
    print("| path | first text p50 ms | first text p99 ms | driver CPU s | CPU vs raw |")
    print("|---|---:|---:|---:|---:|")
    for kind in kinds:
        print(
            f"| {kind} | {statistics.median(p50[kind]) * 1e3:.1f} | "
            f"{statistics.median(p99[kind]) * 1e3:.1f} | {cpu[kind]:.2f} | "
            f"{cpu[kind] / cpu[kinds[0]]:.2f}x |"
        )


if __name__ == "__main__":
    main()
