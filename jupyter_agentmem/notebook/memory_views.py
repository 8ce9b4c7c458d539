"""What ``%agent_memory`` shows: tables and session pages as text and HTML, values for people.

Plain functions from data to ``(text, html)``; the magic only calls them.
Credentials in URLs are masked in everything shown here. The formatters are the ones the
dashboard uses (one source, no ipywidgets).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any, cast

from IPython import display as _ipython_display

from jupyter_agentmem.errors import mask_credentials
from jupyter_agentmem.memory.document import field
from jupyter_agentmem.units import human_bytes
from jupyter_agentmem.watch.snapshot import fmt_age, html_table, text_table

Row = tuple[object, ...]
_display = cast(Callable[..., None], _ipython_display.display)


def show(text: str, html_text: str | None = None) -> None:
    """Display text (and HTML in a notebook) in the current cell, credentials masked."""
    bundle = {"text/plain": mask_credentials(text)}
    if html_text:
        bundle["text/html"] = mask_credentials(html_text)
    _display(bundle, raw=True)


def show_table(title: str, headers: tuple[str, ...], rows: list[Row]) -> None:
    show(
        f"{title}\n{text_table(headers, rows)}",
        f"<b>{html.escape(title)}</b>{html_table(headers, rows)}",
    )


def when(epoch: float | None, now: float | None = None) -> str:
    """``1796219519.5`` -> ``"16:31:59 (3 s ago)"`` (local time; the date if not today)."""
    if epoch is None:
        return "n/a"
    now = time.time() if now is None else now
    local = time.localtime(epoch)
    same_day = time.localtime(now)[:3] == local[:3]
    clock = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", local)
    return f"{clock} ({fmt_age(now - epoch)} ago)"


def for_people(key: str, value: Any, now: float | None = None) -> object:
    """One stats value as people read it: sizes in KiB/MiB, times as local clock + age."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return mask_credentials(str(value))
    if key.endswith("bytes") or key.endswith("bytes_saved"):
        return human_bytes(value)
    if key in ("timestamp", "last_access", "created_at") or key.endswith("_at"):
        return when(float(value), now)
    if key.endswith("_pct"):
        return f"{value:.1f}%"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def stats_rows(data: dict[str, Any]) -> list[Row]:
    """``stats()`` as name/value rows for people (``-o VAR`` keeps the raw dict)."""
    now = time.time()
    rows: list[Row] = [(f"memory.{k}", for_people(k, v, now)) for k, v in data["memory"].items()]
    rows += [("namespace", data["namespace"])]
    rows += [(f"sessions.{k}", for_people(k, v, now)) for k, v in data["sessions"].items()]
    return [*rows, ("guard", data["guard"]), ("watch", "on" if data["watch"] else "off")]


SESSION_HEADERS = ("session", "in memory", "messages", "size", "last active", "turns")


def session_rows(rows: list[dict[str, Any]]) -> list[Row]:
    """``sessions`` table rows: live sessions from the manager, stored ones from the store."""
    now = time.time()
    return [
        (
            r.get("name", r["session_id"]),
            "yes" if r["in_memory"] else "no",
            "n/a" if r.get("messages") is None else r["messages"],
            human_bytes(r.get("estimated_bytes", r.get("stored_bytes"))),
            when(r.get("last_access"), now),
            r.get("turns", "n/a"),
        )
        for r in rows
    ]


def describe_cell(r: dict[str, Any]) -> str:
    """One ``watch`` record: ``In [5] +12.3 MiB (0.52 s)``."""
    return f"In [{r['execution_count']}] {r['delta'] / 2**20:+.1f} MiB ({r['seconds']:.2f} s)"


def _message_html(m: dict[str, Any], cap: int = 4000) -> str:
    content = m.get("content")
    text = content if isinstance(content, str) else repr(content)
    more = f"\n… ({len(text) - cap:,} more chars)" if len(text) > cap else ""
    body = f"<pre style='white-space:pre-wrap'>{html.escape(text[:cap] + more)}</pre>"
    role = html.escape(str(m.get("role")))
    calls = "".join(
        f"<div>→ calls <code>{html.escape(str(c.get('function', {}).get('name')))}</code></div>"
        for c in m.get("tool_calls") or []
        if isinstance(c, dict)
    )
    if m.get("role") == "tool":
        name = html.escape(str(m.get("name") or m.get("tool_call_id")))
        return (
            f"<details><summary><b>tool result</b> {name} ({len(text):,} chars)</summary>"
            f"{body}</details>"
        )
    return f"<div><b>{role}</b>{calls}{body if text or not calls else ''}</div>"


def render_session(doc: dict[str, Any], last: int) -> tuple[str, str]:
    """Text and HTML of ``show``: the summary, then the last messages (tool results folded)."""
    from .namespace import label

    messages = list(doc.get("messages") or [])[-last:]
    where = "in memory" if doc.get("in_memory") else "in the store (not restored)"
    head = (
        f"session {label(doc['session_id'])!r} ({where}): {doc.get('turns', 'n/a')} turn(s), "
        f"{field(doc, 'messages_total')} messages, {doc.get('compactions', 0)} compactions, "
        f"showing {len(messages)} recent messages"
    )
    summary = doc.get("summary") or "(no summary yet)"
    lines = [head, f"summary: {summary}"]
    for m in messages:
        text = str(m.get("content") if m.get("content") is not None else m.get("tool_calls"))
        lines.append(f"[{m.get('role')}] " + (text[:200] + " …" if len(text) > 200 else text))
    page = (
        f"<b>{html.escape(head)}</b><div><i>summary:</i> <pre style='white-space:pre-wrap'>"
        f"{html.escape(summary)}</pre></div>" + "".join(_message_html(m) for m in messages)
    )
    return "\n".join(lines), page
