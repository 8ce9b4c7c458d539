"""Serving benchmark: 1,000 concurrent SSE streams through ``jupyter-agentmem serve``,
against the article's naive FastAPI ``/chat`` in the same run.

Three processes, all on loopback: the model server (the loopback OpenAI-compatible
server streaming a 2,000-char answer in 100 chunks, ``--delay`` seconds apart),
the server under test (``python -m jupyter_agentmem serve`` or uvicorn with the
naive app, each a fresh process), and this driver, which opens ``--streams``
streams over ``--ramp`` seconds with httpx and samples the server's RSS.

Per server: time to the first event and to the first text, the same for the model
itself (clients straight to the model server: its own time to first chunk),
chunks per second, and RSS per open stream ((RSS with every stream open - RSS
after warm-up) / streams). Every stream's text is checked to be the whole answer.

Run: ``python -m benchmarks.bench_serve`` (~2 min; ``--quick``: 100 streams, ~40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

ANSWER = ("The quick brown fox jumps over the lazy dog. " * 45)[:2000]
CHUNK = 20  # 100 chunks
KiB = 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def model_server(
    port: int, delay: float, answer: str = ANSWER, chunk: int = CHUNK, tokens: int = 500
) -> None:
    """The model process: the loopback server answering every request with ``answer``
    in ``chunk``-char pieces, ``delay`` s apart, until SIGTERM/SIGINT."""
    from jupyter_agentmem.testing.demo import DemoReply
    from jupyter_agentmem.testing.server import FakeModelServer

    server = FakeModelServer(
        port,
        default=lambda body: DemoReply(text=answer, completion_tokens=tokens),
        demo_delay=delay,
        demo_chunk_size=chunk,
    ).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


@dataclass
class Stream:
    started: float
    first_event: float | None = None
    first_text: float | None = None
    ended: float | None = None
    events: int = 0
    text: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Target:
    name: str
    path: str
    kind: str  # ours | naive | direct
    pid: int
    base: str

    def body(self, i: int) -> dict[str, Any]:
        if self.kind == "ours":
            return {"session": f"bench-{i}", "message": "tell me about foxes"}
        if self.kind == "naive":
            return {"session_id": f"bench-{i}", "message": "tell me about foxes"}
        messages = [{"role": "user", "content": "tell me about foxes"}]
        return {"model": "bench", "messages": messages, "stream": True}

    def text_of(self, event: str, payload: str) -> str | None:
        if payload == "[DONE]":
            return None
        data = json.loads(payload)
        if self.kind == "ours":
            return data["text"] if event == "delta" else None
        if self.kind == "naive":
            return str(data["content"])
        choices = data.get("choices") or [{}]
        return choices[0].get("delta", {}).get("content")


async def one(
    client: httpx.AsyncClient, target: Target, i: int, out: Stream, opened: list[int]
) -> None:
    try:
        async with client.stream("POST", target.base + target.path, json=target.body(i)) as resp:
            resp.raise_for_status()
            opened[0] += 1
            event = "message"
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                now = time.perf_counter()
                out.events += 1
                if out.first_event is None:
                    out.first_event = now
                text = target.text_of(event, line[5:].strip())
                if text:
                    out.text.append(text)
                    if out.first_text is None:
                        out.first_text = now
            opened[0] -= 1
    except Exception as exc:  # counted and reported, never hidden
        out.error = f"{type(exc).__name__}: {exc}"
    out.ended = time.perf_counter()


async def load(target: Target, streams: int, ramp: float) -> dict[str, Any]:
    proc = psutil.Process(target.pid)
    limits = httpx.Limits(max_connections=streams + 50, max_keepalive_connections=streams + 50)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) as client:
        warm = [Stream(time.perf_counter()) for _ in range(5)]
        await asyncio.gather(*(one(client, target, -1 - k, s, [0]) for k, s in enumerate(warm)))
        await asyncio.sleep(0.5)
        base_rss = proc.memory_info().rss
        opened = [0]
        results: list[Stream] = []
        samples: list[tuple[int, int]] = []  # (open streams, RSS)

        async def sample() -> None:
            while True:
                samples.append((opened[0], proc.memory_info().rss))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        cpu0 = sum(proc.cpu_times()[:2])
        tasks = []
        t0 = time.perf_counter()
        for i in range(streams):
            delay = t0 + i * ramp / streams - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            s = Stream(time.perf_counter())
            results.append(s)
            tasks.append(asyncio.create_task(one(client, target, i, s, opened)))
        await asyncio.gather(*tasks)
        sampler.cancel()
        wall = time.perf_counter() - t0
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    most = max(count for count, _ in samples)
    peak = {"open": most, "rss": max(rss for count, rss in samples if count == most)}
    row = summarise(target, results, wall, base_rss, peak, streams)
    row["cpu_us_per_chunk"] = 1e6 * cpu / max(1, streams * (len(ANSWER) // CHUNK))
    return row


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(
    target: Target, results: list[Stream], wall: float, base_rss: int, peak: dict[str, int], n: int
) -> dict[str, Any]:
    ok = [s for s in results if s.error is None and "".join(s.text) == ANSWER]
    first_event = [1000 * ((s.first_event or 0) - s.started) for s in ok]
    first_text = [1000 * ((s.first_text or 0) - s.started) for s in ok]
    return {
        "name": target.name,
        "streams": n,
        "complete": len(ok),
        "errors": sorted({s.error for s in results if s.error})[:3],
        "first_event_ms": (pct(first_event, 0.5), pct(first_event, 0.99)),
        "first_text_ms": (pct(first_text, 0.5), pct(first_text, 0.99)),
        "events_per_s": sum(s.events for s in results) / wall,
        "model_chunks_per_s": len(ok) * (len(ANSWER) // CHUNK) / wall,
        "wall_s": wall,
        "rss_base_mib": base_rss / 2**20,
        "rss_peak_mib": peak["rss"] / 2**20,
        "peak_open": peak["open"],
        "rss_per_stream_kib": (peak["rss"] - base_rss) / max(1, peak["open"]) / KiB,
    }


def start(cmd: list[str], env: dict[str, str], health: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{cmd} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run(streams: int, delay: float, ramp: float) -> list[dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    env = {**os.environ, "IPYTHONDIR": tmp, "JUPYTER_DATA_DIR": tmp, "PYTHONPATH": os.getcwd()}
    model_port = free_port()
    model = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_serve",
            "--model-server",
            str(model_port),
            str(delay),
        ],
        env=env,
    )
    model_url = f"http://127.0.0.1:{model_port}"
    start_wait = time.monotonic()
    while time.monotonic() - start_wait < 30:
        try:
            httpx.get(model_url + "/v1/models", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    env.update(OPENAI_BASE_URL=model_url + "/v1", OPENAI_API_KEY="sk-bench", AGENTMEM_MODEL="bench")
    rows = []
    try:
        rows.append(
            asyncio.run(
                load(
                    Target("model alone", "/v1/chat/completions", "direct", model.pid, model_url),
                    streams,
                    ramp,
                )
            )
        )
        for name, kind, cmd, path in (
            (
                "jupyter-agentmem serve",
                "ours",
                [
                    sys.executable,
                    "-m",
                    "jupyter_agentmem",
                    "serve",
                    "--store",
                    "memory://",
                    "--log-level",
                    "warning",
                ],
                "/chat",
            ),
            (
                "naive FastAPI /chat (article)",
                "naive",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "benchmarks.peers.naive_serve:app",
                    "--log-level",
                    "warning",
                ],
                "/chat",
            ),
        ):
            port = free_port()
            proc = start([*cmd, "--port", str(port)], env, f"http://127.0.0.1:{port}/healthz")
            try:
                rows.append(
                    asyncio.run(
                        load(
                            Target(name, path, kind, proc.pid, f"http://127.0.0.1:{port}"),
                            streams,
                            ramp,
                        )
                    )
                )
            finally:
                stop(proc)
    finally:
        model.send_signal(signal.SIGTERM)
        model.wait(30)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    model = rows[0]
    lines = [
        "| server | complete | first event p50 / p99 | first text p50 / p99"
        " | first text p99 over the model's | events/s | model chunks/s | RSS after warm-up"
        " | RSS with all open | RSS per open stream | CPU per model chunk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ours = r is not model
        over = f"{r['first_text_ms'][1] - model['first_text_ms'][1]:+.1f} ms" if ours else "–"
        per_stream = f"{r['rss_per_stream_kib']:.1f} KiB" if ours else "–"
        fe, ft = r["first_event_ms"], r["first_text_ms"]
        lines.append(
            f"| {r['name']} | {r['complete']}/{r['streams']} | {fe[0]:.1f} / {fe[1]:.1f} ms"
            f" | {ft[0]:.1f} / {ft[1]:.1f} ms | {over} | {r['events_per_s']:,.0f}"
            f" | {r['model_chunks_per_s']:,.0f} | {r['rss_base_mib']:.1f} MiB"
            f" | {r['rss_peak_mib']:.1f} MiB ({r['peak_open']} open) | {per_stream}"
            f" | {r['cpu_us_per_chunk']:.0f} µs |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--model-server":
        model_server(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.25, help="Seconds between model chunks.")
    parser.add_argument("--ramp", type=float, default=4.0, help="Seconds to open every stream.")
    parser.add_argument("--quick", action="store_true", help="100 streams.")
    parser.add_argument("--json", help="Also write the rows to this file.")
    args = parser.parse_args()
    streams = 100 if args.quick else args.streams
    rows = run(streams, args.delay, args.ramp)
    print(table(rows))
    for r in rows:
        if r["errors"]:
            print(f"{r['name']}: errors {r['errors']}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
