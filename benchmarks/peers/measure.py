"""The measurements, each meant to run in its own fresh interpreter.

Why a subprocess per measurement: RSS is only clean in a process that holds
nothing else, imports (LangChain, LangGraph, the Agents SDK) cost tens of MB
that must not be charged to the first sessions, and a peer that grows with
turns squared must not take the others down with it. Every function returns a
JSON-able dict; ``benchmarks.compare`` runs them and prints the tables.

Budgets: each run stops early when it passes its time or memory budget and
says so (``stopped``), so a peer that cannot reach 1,000 sessions or 500 turns
on this machine is reported with what it did reach, never extrapolated silently.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import tempfile
import time
import tracemalloc
from typing import Any

import psutil

from .. import workload
from . import make
from .base import Observer, Outputs, Peer

CHECKPOINTS = (1, 5, 10, 25, 50, 100, 150, 200, 300, 400, 500)
WARMUP_TURNS = 6
WARMUP_INDEX = 999_999
MESSAGES_PER_TURN = 7


def pool(texts: list[str]) -> Outputs:
    """Tool results from a pool of distinct texts, copied fresh per use so nothing is
    shared between messages (generating 95-row JSON each time would dominate)."""

    def outputs(session: int, turn: int, call: int) -> str:
        return workload.fresh(texts[(session * 7 + turn * 4 + call) % len(texts)])

    return outputs


def raw_texts(size: int = 64) -> list[str]:
    return [workload.tool_result(0, i, 0) for i in range(size)]


@functools.cache
def _libsqlite() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("sqlite3")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if lib is not None:
        lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib


def sqlite_heap() -> int:
    """Bytes SQLite has allocated in this process (page caches, in-memory databases):
    C memory that tracemalloc cannot see. Read with ``sqlite3_memory_used()`` from the
    shared libsqlite3 that Python's ``_sqlite3`` links to; 0 where it cannot be read."""
    lib = _libsqlite()
    return int(lib.sqlite3_memory_used()) if lib is not None else 0


def _describe(peer: Peer) -> dict[str, Any]:
    return {"label": peer.label, "version": peer.version, "note": peer.note}


def _warm_up(peer: Peer, outputs: Outputs) -> None:
    """Run one throwaway session first: lazy imports and caches (LangChain loads
    langsmith on the first summary) belong to the baseline, not to the sessions."""
    handle = peer.start(WARMUP_INDEX)
    for t in range(WARMUP_TURNS):
        peer.turn(handle, WARMUP_INDEX, t, outputs)
    gc.collect()


def heap(
    name: str, sessions: int, turns: int, budget_s: float, cap_bytes: int, **kw: Any
) -> dict[str, Any]:
    """Heap bytes per session (tracemalloc + SQLite's own heap) at each checkpoint turn,
    and session 0's model inputs (sizes, orphan check)."""
    peer = make(name, **kw)
    with tempfile.TemporaryDirectory() as workdir:
        peer.setup(workdir, sessions)
        outputs = pool(peer.prepare_outputs(raw_texts()))
        _warm_up(peer, outputs)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        base_sqlite = sqlite_heap()
        handles = [peer.start(i) for i in range(sessions)]
        observer = Observer(keep={*CHECKPOINTS, turns})
        points: dict[int, dict[str, float]] = {}
        stopped = ""
        started = time.perf_counter()
        for t in range(turns):
            for i, handle in enumerate(handles):
                peer.turn(handle, i, t, outputs, observer if i == 0 else None)
            done = t + 1
            if done in CHECKPOINTS or done == turns:
                gc.collect()
                traced = tracemalloc.get_traced_memory()[0] - base
                sqlite = sqlite_heap() - base_sqlite
                points[done] = {"python": traced / sessions, "sqlite": sqlite / sessions}
            traced = tracemalloc.get_traced_memory()[0] - base
            elapsed = time.perf_counter() - started
            if done < turns and (elapsed > budget_s or traced > cap_bytes):
                why = "time" if elapsed > budget_s else "memory"
                stopped = f"{why} budget at turn {done} ({elapsed:.0f} s, {traced / 2**20:.0f} MiB)"
                break
        tracemalloc.stop()
        report = observer.report()
        report["chars_by_turn"] = {
            t: c for t, c in report["chars_by_turn"].items() if t + 1 in points
        }
        result = {
            **_describe(peer),
            "sessions": sessions,
            "points": points,
            "observer": report,
            "stopped": stopped,
            "seconds": time.perf_counter() - started,
        }
        peer.close()
    return result


def rss(
    name: str, sessions: int, turns: int, budget_s: float, cap_bytes: int, **kw: Any
) -> dict[str, Any]:
    """RSS growth for ``sessions`` sessions of ``turns`` turns (no tracemalloc)."""
    peer = make(name, **kw)
    process = psutil.Process()
    with tempfile.TemporaryDirectory() as workdir:
        peer.setup(workdir, sessions)
        outputs = pool(peer.prepare_outputs(raw_texts()))
        _warm_up(peer, outputs)
        base = process.memory_info().rss
        handles = []
        stopped = ""
        started = time.perf_counter()
        for i in range(sessions):
            handle = peer.start(i)
            for t in range(turns):
                peer.turn(handle, i, t, outputs)
            handles.append(handle)
            elapsed = time.perf_counter() - started
            grown = process.memory_info().rss - base
            if i + 1 < sessions and (elapsed > budget_s or grown > cap_bytes):
                why = "time" if elapsed > budget_s else "memory"
                stopped = f"{why} budget after {i + 1} sessions"
                break
        seconds = time.perf_counter() - started
        gc.collect()
        grown = process.memory_info().rss - base
        result = {
            **_describe(peer),
            "requested": sessions,
            "sessions": len(handles),
            "rss_growth": grown,
            "disk_bytes": peer.disk_bytes(),
            "seconds": seconds,
            "stopped": stopped,
        }
        peer.close()
    return result


def speed(name: str, sessions: int, turns: int, repeats: int, **kw: Any) -> dict[str, Any]:
    """Messages per second through the peer's whole turn (adds, its policy, building the
    model input twice), raw tool texts (ours truncates them); best of ``repeats``."""
    best = 0.0
    texts = raw_texts()
    label: dict[str, Any] = {}
    for _ in range(repeats):
        peer = make(name, **kw)
        label = _describe(peer)
        best = max(best, turns_per_s(peer, sessions, turns, texts) * MESSAGES_PER_TURN)
        gc.collect()
    result = {**label, "messages_per_s": best, "sessions": sessions, "turns": turns}
    if name == "agentmem":
        result["bare_add_message_per_s"] = bare_add_message(1000, 20, repeats)
    return result


def turns_per_s(peer: Peer, sessions: int, turns: int, texts: list[str]) -> float:
    """Whole turns per second of a fresh ``peer``: ``turns`` rounds over ``sessions``
    sessions, raw tool texts from ``texts``; set-up and closing are not timed."""
    with tempfile.TemporaryDirectory() as workdir:
        peer.setup(workdir, sessions)
        outputs = pool(texts)
        handles = [peer.start(i) for i in range(sessions)]
        started = time.perf_counter()
        for t in range(turns):
            for i, handle in enumerate(handles):
                peer.turn(handle, i, t, outputs)
        elapsed = time.perf_counter() - started
        peer.close()
    return sessions * turns / elapsed


def bare_add_message(sessions: int, rounds: int, repeats: int) -> float:
    """``add_message`` alone on live sessions (defaults, inline compaction included),
    tool contents already truncated to 2,000 chars: the engine's own overhead."""
    from jupyter_agentmem.memory.manager import SessionManager
    from jupyter_agentmem.stores import MemoryStore

    turn = [
        workload.user_message(0, 0),
        {"role": "assistant", "content": None, "tool_calls": workload.tool_calls(0, 0)},
        *[
            {"role": "tool", "tool_call_id": f"call_0_0_{j}", "content": "x" * 2000}
            for j in range(4)
        ],
        workload.answer_message(0, 0),
    ]
    best = 0.0
    for _ in range(repeats):
        manager = SessionManager(max_sessions=sessions, max_memory_bytes=2**36, store=MemoryStore())
        states = [manager.get_or_create(f"s{i}") for i in range(sessions)]
        started = time.perf_counter()
        for _ in range(rounds):
            for state in states:
                for message in turn:
                    state.add_message(message)
        best = max(best, rounds * sessions * len(turn) / (time.perf_counter() - started))
    return best


def persist(name: str, sessions: int, turns: int, budget_s: float, **kw: Any) -> dict[str, Any]:
    """Save (flush) and restore throughput through the peer's own persistence."""
    peer = make(name, **kw)
    with tempfile.TemporaryDirectory() as workdir:
        peer.setup(workdir, sessions)
        outputs = pool(peer.prepare_outputs(raw_texts()))
        handles = []
        started = time.perf_counter()
        for i in range(sessions):
            handle = peer.start(i)
            for t in range(turns):
                peer.turn(handle, i, t, outputs)
            handles.append(handle)
            if time.perf_counter() - started > budget_s:
                break
        build = time.perf_counter() - started
        built = len(handles)
        started = time.perf_counter()
        peer.flush(handles)
        flush = time.perf_counter() - started
        peer.close()
        del handles
        gc.collect()
        started = time.perf_counter()
        restored = peer.restore(list(range(built)))
        restore = time.perf_counter() - started
        result = {
            **_describe(peer),
            "sessions": built,
            "turns": turns,
            "build_messages_per_s": built * turns * MESSAGES_PER_TURN / build,
            "flush_sessions_per_s": built / flush if flush > 0 else None,
            "restore_sessions_per_s": built / restore,
            "messages_per_session": restored / built,
            "disk_bytes_per_session": peer.disk_bytes() / built,
        }
        peer.close()
    return result


def orphans(name: str, variants: list[dict[str, Any]], turns: int) -> dict[str, Any]:
    """Run one session per setting and check every model input for orphan tool results."""
    rows = []
    label = _describe(make(name))
    outputs = pool(raw_texts())
    for kw in variants:
        peer = make(name, **kw)
        observer = Observer()
        with tempfile.TemporaryDirectory() as workdir:
            peer.setup(workdir, 1)
            handle = peer.start(0)
            for t in range(turns):
                peer.turn(handle, 0, t, outputs, observer)
            peer.close()
        report = observer.report()
        rows.append(
            {
                "setting": kw,
                "calls": report["calls"],
                "orphan_calls": report["orphan_calls"],
                "first_orphan": report["first_orphan"],
            }
        )
    return {**label, "variants": rows}
