"""Markdown tables from the raw results of ``benchmarks.compare``.

Every ratio is "peer / ours": for memory and context a bigger ratio means the
peer costs more, for throughput it means the peer is faster. A cell is
``n/a`` when the peer does not do that thing and ``—`` when the run stopped
before reaching it (the row's note says why).
"""

from __future__ import annotations

from typing import Any

KiB = 1024
GiB = 1024**3
OURS = "agentmem"
TARGET_SESSIONS_PER_GIB = 30_000
TARGET_ADD_PER_S = 200_000
GROWTH_TIE = 0.02  # heap ratios closer than this are noise (allocator, dict resizes)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def _ratio(value: float | None, ours: float | None) -> str:
    if value is None or not ours:
        return "—"
    return f"{value / ours:,.1f}×"


def heap_at(result: dict[str, Any], turn: int, part: str = "") -> float | None:
    """Bytes per session at ``turn``: Python heap + SQLite's own heap (or one ``part``)."""
    points = result.get("points") or {}
    point = points.get(str(turn), points.get(turn))
    if point is None:
        return None
    return float(point[part]) if part else float(point["python"] + point["sqlite"])


def last_turn(result: dict[str, Any]) -> int:
    return max((int(t) for t in result.get("points") or {}), default=0)


def context_at(result: dict[str, Any], turn: int) -> int | None:
    chars = (result.get("observer") or {}).get("chars_by_turn") or {}
    value = chars.get(str(turn - 1), chars.get(turn - 1))
    return None if value is None else int(value)


def heap_section(heap: dict[str, Any], turns: int) -> str:
    ours = heap.get(OURS, {})
    ours50, ours_end = heap_at(ours, 50), heap_at(ours, turns)
    rows = []
    for name, r in heap.items():
        if "error" in r:
            rows.append([name, "error", "", "", "", "", "", r["error"][:80]])
            continue
        h50, end = heap_at(r, 50), heap_at(r, turns)
        growth = f"{end / h50:,.2f}×" if end and h50 else "—"
        end_cell = _num(end and end / KiB, 1)
        reached = last_turn(r)
        if end is None and h50 and reached > 50:
            last = heap_at(r, reached) or 0.0
            growth = f"≥ {last / h50:,.1f}× by turn {reached}"
            end_cell = f"— ({last / KiB:,.0f} at turn {reached})"
        note = r.get("stopped") or ""
        sqlite50 = heap_at(r, 50, "sqlite")
        if sqlite50 and sqlite50 >= KiB:
            note = f"† of which SQLite's heap {sqlite50 / KiB:,.0f} KiB @50. {note}".strip()
        rows.append(
            [
                r["label"],
                _num(h50 and h50 / KiB, 1),
                end_cell,
                growth,
                _ratio(h50, ours50),
                _ratio(end, ours_end),
                str(r["sessions"]),
                note,
            ]
        )
    header = [
        "peer",
        "KiB/session @50",
        f"KiB/session @{turns}",
        f"growth 50→{turns}",
        "× ours @50",
        f"× ours @{turns}",
        "sessions",
        "note",
    ]
    if turns == 50:
        header, rows = _drop(header, rows, (2, 3, 5))
    intro = (
        "## Heap per session\n\n"
        "Python heap by tracemalloc plus SQLite's own heap (`sqlite3_memory_used()`: page "
        "caches and in-memory databases, which tracemalloc cannot see), after a warm-up "
        "session, divided by the sessions of the run.\n\n"
    )
    return intro + table(header, rows)


def _drop(
    header: list[str], rows: list[list[str]], columns: tuple[int, ...]
) -> tuple[list[str], list[list[str]]]:
    """Remove duplicate columns (a quick run has only the 50-turn point)."""
    keep = [i for i in range(len(header)) if i not in columns]
    return [header[i] for i in keep], [[row[i] for i in keep if i < len(row)] for row in rows]


def context_section(heap: dict[str, Any], turns: int) -> str:
    ours = heap.get(OURS, {})
    rows = []
    for r in heap.values():
        if "error" in r:
            continue
        c50, cend = context_at(r, 50), context_at(r, turns)
        rows.append(
            [
                r["label"],
                _num(c50),
                _num(c50 and c50 / 4),
                _ratio(c50, context_at(ours, 50)),
                _num(cend),
                _num(cend and cend / 4),
                _ratio(cend, context_at(ours, turns)),
            ]
        )
    header = [
        "peer",
        "chars @50",
        "≈tokens @50",
        "× ours",
        f"chars @{turns}",
        f"≈tokens @{turns}",
        "× ours",
    ]
    if turns == 50:
        header, rows = _drop(header, rows, (4, 5, 6))
    intro = (
        "## Context sent to the model per turn\n\n"
        "Both model calls of the turn added up (session 0); characters of message "
        "content and tool-call arguments, tokens ≈ chars/4.\n\n"
    )
    return intro + table(header, rows)


def rss_section(rss: dict[str, Any], skipped: dict[str, str] | None = None) -> str:
    per_ours: float | None = None
    rows = []
    for name, runs in rss.items():
        for sessions, r in sorted(runs.items(), key=lambda kv: int(kv[0])):
            if "error" in r:
                rows.append([name, sessions, "error", "", "", "", "", r["error"][:80]])
                continue
            per = r["rss_growth"] / max(1, r["sessions"])
            if name == OURS and per_ours is None:
                per_ours = per
            disk = r.get("disk_bytes") or 0
            note = r.get("stopped") or ""
            if disk >= KiB * r["sessions"]:
                note = f"disk {disk / r['sessions'] / KiB:,.0f} KiB/session. {note}".strip()
            rows.append(
                [
                    r["label"],
                    f"{r['sessions']:,} / {r['requested']:,}",
                    _num(r["rss_growth"] / 2**20, 1),
                    _num(per / KiB, 1),
                    _num(GiB / per if per > 0 else None),
                    _ratio(per, per_ours),
                    _num(r["seconds"], 1),
                    note,
                ]
            )
    labels = {n: next(iter(runs.values())).get("label", n) for n, runs in rss.items()}
    for name, why in (skipped or {}).items():
        rows.append([labels.get(name, name), "10,000 not run", "", "", "", "", "", why])
    header = [
        "peer",
        "sessions built / asked",
        "RSS growth MiB",
        "KiB/session",
        "sessions/GiB",
        "× ours",
        "build s",
        "note",
    ]
    intro = (
        "## Process RSS, 50-turn sessions (fresh subprocess per row)\n\n"
        "Rows that stopped early hit the run's time or memory budget; their per-session "
        "figure comes from the sessions they built. A peer gets a 10,000-session row when "
        "its 1,000 sessions fit the budget and ten times its time and RSS still do.\n\n"
    )
    return intro + table(header, rows)


def speed_section(speed: dict[str, Any]) -> str:
    ours = speed.get(OURS, {}).get("messages_per_s")
    rows = []
    for r in speed.values():
        if "error" in r:
            continue
        rate = r["messages_per_s"]
        rows.append([r["label"], _num(rate), _ratio(rate, ours)])
    text = (
        "## Throughput (best of the repeats)\n\n"
        "Messages per second through the whole turn: the peer's add path, its policy "
        "(truncation, compaction, trimming, checkpointing) and building the model input "
        "twice per turn; raw tool results.\n\n"
    )
    text += table(["peer", "messages/s", "× ours (>1 = faster than ours)"], rows)
    bare = speed.get(OURS, {}).get("bare_add_message_per_s")
    if bare:
        text += (
            f"\n\nOurs, `add_message` alone (1,000 live sessions, inline compaction, "
            f"tool contents pre-truncated to 2,000 chars): **{bare:,.0f}/s**."
        )
    return text


def persist_section(persist: dict[str, Any]) -> str:
    rows = []
    for name, r in persist.items():
        if "error" in r:
            rows.append([name, "error", "", "", "", r["error"][:80]])
            continue
        if name == "article":
            mode = "no-op (evicted = lost)"
        elif r.get("flush_sessions_per_s") and name.startswith(OURS):
            mode = f"on eviction/flush: {r['flush_sessions_per_s']:,.0f} sessions/s"
        else:
            mode = f"write-through ({r['build_messages_per_s']:,.0f} messages/s while building)"
        rows.append(
            [
                r["label"],
                mode,
                _num(r["restore_sessions_per_s"]),
                _num(r["messages_per_session"], 1),
                _num(r["disk_bytes_per_session"] / KiB, 1),
                f"{r['sessions']} × {r['turns']} turns",
            ]
        )
    header = [
        "peer",
        "save",
        "restore sessions/s",
        "messages/session back",
        "disk KiB/session",
        "run",
    ]
    note = (
        "\n\nMessages back per session: ours restores exactly what it kept (the bounded "
        "window; the summary comes back too); the write-through peers restore their whole "
        "history; the article's no-op persistence restores nothing."
    )
    return "## Persistence and restore\n\n" + table(header, rows) + note


def orphan_section(orphans: dict[str, Any]) -> str:
    rows = []
    for r in orphans.values():
        if "error" in r:
            continue
        bad = [v for v in r["variants"] if v["orphan_calls"]]
        settings = ", ".join(_setting(v["setting"]) for v in r["variants"])
        if bad:
            first = bad[0]
            answer = f"**yes** ({len(bad)}/{len(r['variants'])} settings)"
            example = f"{_setting(first['setting'])}: {first['first_orphan']}"
        else:
            answer, example = "no", ""
        rows.append([r["label"], answer, settings, example])
    intro = (
        "## Orphan tool results in the model input\n\n"
        "A `tool` message whose assistant `tool_calls` entry is not in the same input "
        "(providers answer 400; LangChain issues #33245, #38352). Every model call of one "
        "session is checked, at several window sizes because a cut lands on a tool "
        "result only for some.\n\n"
    )
    return intro + table(["peer", "orphan?", "settings tried", "first case"], rows)


def _setting(setting: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "default"


def versions_section(results: dict[str, Any]) -> str:
    seen: dict[str, dict[str, Any]] = {}
    for group in ("heap", "speed", "persist", "orphans"):
        for name, r in results.get(group, {}).items():
            if "label" in r:
                seen.setdefault(name, r)
    rows = [[r["label"], r.get("version", ""), r.get("note", "")] for r in seen.values()]
    rows += [[name, "unavailable", why] for name, why in results.get("missing", {}).items()]
    return "## Peers and versions\n\n" + table(["peer", "version", "setup"], rows)


def targets_section(results: dict[str, Any], turns: int) -> str:
    heap = results["heap"]
    ours = heap.get(OURS, {})
    lines = ["## Targets"]
    for turn in sorted({50, turns}):
        mine = heap_at(ours, turn)
        beaten = [
            r["label"]
            for n, r in heap.items()
            if n != OURS
            and "error" not in r
            and (h := heap_at(r, turn)) is not None
            and mine
            and h <= mine
        ]
        verdict = "met" if not beaten else "MISSED, smaller: " + ", ".join(beaten)
        lines.append(f"- smallest heap per session at {turn} turns: {verdict}")
    ours50, ours_end = heap_at(ours, 50), heap_at(ours, turns)
    if turns > 50 and ours50 and ours_end:
        mine = ours_end / ours50
        flatter, tied = [], []
        for n, r in heap.items():
            h50, end = heap_at(r, 50), heap_at(r, turns)
            if n == OURS or not (h50 and end):
                continue
            growth = end / h50
            if growth < mine - GROWTH_TIE:
                flatter.append(f"{r['label']} ({growth:.2f}×)")
            elif growth <= mine + GROWTH_TIE:
                tied.append(f"{r['label']} ({growth:.2f}×, {end / ours_end:.1f}× our heap)")
        verdict = "MISSED, flatter: " + ", ".join(flatter) if flatter else "met"
        if tied and not flatter:
            verdict += "; tied (within ±2 %, also bounded): " + ", ".join(tied)
        lines.append(f"- smallest growth 50→{turns} turns (ours {mine:.2f}×): {verdict}")
    for sessions, r in sorted(results["rss"].get(OURS, {}).items(), key=lambda kv: int(kv[0])):
        if "error" in r or not r["sessions"]:
            continue
        per_gib = GiB / max(1, r["rss_growth"] / r["sessions"])
        ok = "met" if per_gib >= TARGET_SESSIONS_PER_GIB else "MISSED"
        lines.append(
            f"- ≥ {TARGET_SESSIONS_PER_GIB:,} fifty-turn sessions per GiB "
            f"({int(sessions):,} sessions): {per_gib:,.0f}, {ok}"
        )
    bare = results["speed"].get(OURS, {}).get("bare_add_message_per_s")
    if bare:
        ok = "met" if bare >= TARGET_ADD_PER_S else "MISSED"
        lines.append(f"- ≥ {TARGET_ADD_PER_S:,} add_message/s: {bare:,.0f}, {ok}")
    return "\n".join(lines)


def render(results: dict[str, Any], turns: int) -> str:
    parts = [
        heap_section(results["heap"], turns),
        context_section(results["heap"], turns),
        rss_section(results["rss"], results.get("rss_skipped")),
        speed_section(results["speed"]),
        persist_section(results["persist"]),
        orphan_section(results["orphans"]),
        targets_section(results, turns),
        versions_section(results),
        f"_Run time: {results.get('total_s', 0) / 60:.1f} min "
        f"(memory phase {results.get('memory_phase_s', 0) / 60:.1f} min, two runs at a time)._",
    ]
    return "\n\n".join(parts)
