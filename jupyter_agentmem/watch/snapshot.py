"""One typed snapshot of the kernel's memory and sessions, and its text/HTML tables.

Why typed: the dashboard, ``%agent_memory`` and the terminal fallback all read
these keys; as ``TypedDict`` a renamed key fails ``mypy`` instead of showing 0.
Why separate from :mod:`.dashboard`: nothing here imports ipywidgets, so a
terminal IPython prints the same snapshot without ever loading a widget library.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from jupyter_agentmem.memory.stats import ManagerStats
from jupyter_agentmem.units import human_bytes

from .guard import describe_guard
from .host import Host
from .monitor import MemorySnapshot

_TABLE_CSS = (
    "<style>.agentmem-table{border-collapse:collapse}.agentmem-table th,"
    ".agentmem-table td{text-align:left;padding:1px 14px 1px 0;line-height:1.3}</style>"
)
SESSION_HEADERS = ("session", "messages", "summary chars", "bytes", "last active", "in memory")


class SessionTotals(TypedDict):
    """The manager's counters the views show (from ``SessionManager.stats()``)."""

    sessions_in_memory: int
    sessions_persisted: int | None
    max_sessions: int
    estimated_bytes: int
    max_memory_bytes: int
    compactions: int
    evictions: int
    restores: int
    truncated_chars_saved: int
    last_store_error: str | None


class SessionRow(TypedDict):
    """One row of the largest-sessions table (from ``SessionManager.session_info()``)."""

    session_id: str
    in_memory: bool
    messages: int | None
    summary_chars: int
    estimated_bytes: int
    last_access: float | None


class KernelSnapshot(TypedDict):
    """Everything one dashboard refresh shows."""

    time: float  # epoch seconds of the sample
    memory: MemorySnapshot
    sessions: SessionTotals
    top: list[SessionRow]  # largest live sessions, at most top_n
    guard: str  # one line about the memory guard


def session_totals(stats: ManagerStats) -> SessionTotals:
    """Pick the shown counters out of ``SessionManager.stats()`` (typed: a counter
    renamed in the manager fails ``mypy`` instead of showing a silent 0)."""
    return {
        "sessions_in_memory": stats.sessions_in_memory,
        "sessions_persisted": stats.sessions_persisted,
        "max_sessions": stats.max_sessions,
        "estimated_bytes": stats.estimated_bytes,
        "max_memory_bytes": stats.max_memory_bytes,
        "compactions": stats.compactions,
        "evictions": stats.evictions,
        "restores": stats.restores,
        "truncated_chars_saved": stats.truncated_chars_saved,
        "last_store_error": stats.last_store_error,
    }


def session_row(info: Mapping[str, Any]) -> SessionRow:
    """One ``SessionManager.session_info()`` dict as a typed row (same strictness)."""
    return {
        "session_id": str(info["session_id"]),
        "in_memory": bool(info["in_memory"]),
        "messages": info["messages"],
        "summary_chars": int(info["summary_chars"]),
        "estimated_bytes": int(info["estimated_bytes"]),
        "last_access": info["last_access"],
    }


def kernel_snapshot(host: Host, top_n: int = 10, detailed: bool = False) -> KernelSnapshot:
    """Build the snapshot from the kernel's real manager and monitor.

    Cost per tick: ``manager.stats()`` (O(1) plus the store's count) and
    ``largest_sessions(top_n)``, a heap selection over the *live* sessions (see
    the benchmark for its cost at 10,000 sessions).
    """
    memory = host.monitor.check(detailed=detailed)
    return {
        "time": time.time(),
        "memory": memory,
        "sessions": session_totals(host.manager.stats()),
        "top": [session_row(s) for s in host.manager.largest_sessions(top_n)],
        "guard": describe_guard(host),
    }


def has_widget_frontend(shell: object) -> bool:
    """True inside a Jupyter kernel; False in terminal IPython or a bare InteractiveShell."""
    if shell is None or type(shell).__name__ == "TerminalInteractiveShell":
        return False
    return getattr(shell, "kernel", None) is not None


# ------------------------------------------------------------------ formatting
def fmt_age(seconds: float | None) -> str:
    """A short human age: ``"4 s"``, ``"12 min"``, ``"3 h"``, ``"2 d"``."""
    if seconds is None:
        return "n/a"
    s = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            return f"{s / size:.0f} {unit}"
    return f"{s:.0f} s"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned table for terminals and ``text/plain``."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; every cell is escaped (session ids are user input)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers) if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f"<table class='agentmem-table'>{_TABLE_CSS}<thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def session_rows(top: Sequence[SessionRow], now: float) -> list[tuple[object, ...]]:
    """Rows of the largest-sessions table."""
    return [
        (
            s["session_id"],
            "n/a" if s["messages"] is None else s["messages"],
            s["summary_chars"],
            human_bytes(s["estimated_bytes"]),
            "n/a" if s["last_access"] is None else fmt_age(now - s["last_access"]) + " ago",
            "yes" if s["in_memory"] else "no",
        )
        for s in top
    ]


def memory_line(mem: MemorySnapshot) -> str:
    """``RSS 512.0 MiB of 2.0 GiB (cgroup) -- 25.0% [ok]`` (PSS/USS when measured)."""
    parts = [f"RSS {human_bytes(mem['rss_bytes'])}"]
    if mem["pss_bytes"] is not None:
        parts.append(f"PSS {human_bytes(mem['pss_bytes'])}")
    if mem["uss_bytes"] is not None:
        parts.append(f"USS {human_bytes(mem['uss_bytes'])}")
    return (
        f"{' · '.join(parts)} of {human_bytes(mem['limit_bytes'])} "
        f"({mem['limit_source']}) — {mem['usage_pct']:.1f}% [{mem['status']}]"
    )


def totals_rows(ses: SessionTotals) -> list[tuple[str, str]]:
    """The manager's counters as (name, value) pairs."""
    persisted = ses["sessions_persisted"]
    return [
        (
            "sessions in memory",
            f"{ses['sessions_in_memory']:,} of max {ses['max_sessions']:,}",
        ),
        ("sessions persisted", "n/a" if persisted is None else f"{persisted:,}"),
        (
            "estimated bytes",
            f"{human_bytes(ses['estimated_bytes'])} of "
            f"{human_bytes(ses['max_memory_bytes'])} budget",
        ),
        (
            "compactions / evictions / restores",
            f"{ses['compactions']:,} / {ses['evictions']:,} / {ses['restores']:,}",
        ),
        ("truncated chars saved", f"{ses['truncated_chars_saved']:,}"),
    ]


def format_text(snap: KernelSnapshot, top_n: int = 10) -> str:
    """The whole snapshot as plain text: the terminal fallback of the dashboard."""
    mem, ses, now = snap["memory"], snap["sessions"], snap["time"]
    lines = ["Kernel memory: " + memory_line(mem)]
    if mem["leak_suspected"]:
        lines.append("WARNING: possible leak: RSS keeps growing while the session count is flat")
    lines += [f"{k}: {v}" for k, v in totals_rows(ses)]
    if ses["last_store_error"]:
        lines.append(f"store error: {ses['last_store_error']}")
    if snap["guard"]:
        lines.append(snap["guard"])
    top = snap["top"][:top_n]
    if top:
        lines += [
            "",
            f"Largest {len(top)} sessions:",
            text_table(SESSION_HEADERS, session_rows(top, now)),
        ]
    return "\n".join(lines)
