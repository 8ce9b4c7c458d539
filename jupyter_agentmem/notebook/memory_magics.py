"""``%agent_memory``: look at and steer the kernel's agent memory from a notebook.

The Magics class only parses (``magic_arguments`` for the generated help and a
one-line ``UsageError`` for any bad input) and delegates to plain functions
that take the :class:`~jupyter_agentmem.notebook.context.KernelContext`, so every
sub-command is testable without a shell and usable from Python.
"""

from __future__ import annotations

import argparse
import html
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from IPython import display as _ipython_display
from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from jupyter_agentmem.errors import AgentMemError
from jupyter_agentmem.units import MIN_INTERVAL_SECONDS, MIN_MEMORY_BUDGET_BYTES, human_bytes
from jupyter_agentmem.watch.snapshot import format_text, html_table, text_table

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .context import KernelContext

Row = tuple[object, ...]
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# Typed views of IPython's untyped helpers (mypy --strict).
argument = cast(Callable[..., _Decorator], _ma.argument)
magic_arguments = cast(Callable[[], _Decorator], _ma.magic_arguments)
parse_argstring = cast(Callable[[Callable[..., Any], str], Any], _ma.parse_argstring)
display = cast(Callable[..., None], _ipython_display.display)
MagicArgumentParser = cast(Callable[..., argparse.ArgumentParser], _ma.MagicArgumentParser)
_SECRET = re.compile(r"(secret|token|password|api_key)$", re.IGNORECASE)  # never shown


class MemoryCommandError(AgentMemError, ValueError):
    """A sub-command got a bad value; the message says which and what is accepted."""


def show(text: str, html_text: str | None = None) -> None:
    """Display text (and HTML in a notebook) in the current cell."""
    bundle = {"text/plain": text} | ({"text/html": html_text} if html_text else {})
    display(bundle, raw=True)


def show_table(title: str, headers: tuple[str, ...], rows: list[Row]) -> None:
    show(
        f"{title}\n{text_table(headers, rows)}",
        f"<b>{html.escape(title)}</b>{html_table(headers, rows)}",
    )


# --------------------------------------------------------------- plain functions
def stats(context: KernelContext) -> dict[str, Any]:
    """Memory (vs the real limit), manager counters and guard/watch state, as one dict."""
    from jupyter_agentmem.watch.guard import describe_guard
    from jupyter_agentmem.watch.ticker import get_watcher

    return {
        "memory": context.monitor.check(),
        "sessions": context.manager.stats().as_dict(),
        "guard": describe_guard(context),
        "watch": get_watcher(context) is not None,
    }


def stats_rows(data: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [(f"memory.{k}", v) for k, v in data["memory"].items()]
    rows += [(f"sessions.{k}", v) for k, v in data["sessions"].items()]
    return [*rows, ("guard", data["guard"]), ("watch", "on" if data["watch"] else "off")]


def sessions(context: KernelContext, limit: int = 20) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` sessions (in memory, most recent first, then stored) and the total."""
    everything = context.manager.list_sessions()
    return everything[:limit], len(everything)


def session_document(context: KernelContext, session_id: str) -> dict[str, Any]:
    """Summary and recent messages of a session; a stored one is read without restoring it."""
    manager = context.manager
    state = manager.get(session_id) if session_id in manager.live_ids() else None
    if state is not None:
        return state.to_dict() | {"in_memory": True}
    doc = manager.store.load(session_id)
    if doc is None:
        raise MemoryCommandError(f"no session {session_id!r}: `%agent_memory sessions` lists them")
    return dict(doc) | {"in_memory": False}


def compact(context: KernelContext, session_id: str | None = None) -> int:
    """Compact one session now (or, with ``None``, every session that needs it)."""
    manager = context.manager
    if session_id is None:
        return manager.compact_all()
    state = manager.get(session_id)
    if state is None:
        raise MemoryCommandError(f"no session {session_id!r}: `%agent_memory sessions` lists them")
    from jupyter_agentmem.memory.summarize import ExtractiveSummarizer

    return int(state.compact(manager.policy.summarizer or ExtractiveSummarizer()))


def apply_limits(
    context: KernelContext,
    max_sessions: int | None = None,
    max_memory: str | None = None,
    max_recent: int | None = None,
    mem_limit: str | None = None,
) -> dict[str, Any]:
    """Change budgets on the live manager and the config, and ``MEM_LIMIT``; all or nothing."""
    from jupyter_agentmem.watch.monitor import parse_size, read_memory_limit

    values: dict[str, Any] = {"max_sessions": max_sessions, "max_recent": max_recent}
    try:
        values["max_memory_bytes"] = None if max_memory is None else parse_size(max_memory)
        limit = None if mem_limit is None else parse_size(mem_limit)
    except ValueError as exc:
        raise MemoryCommandError(str(exc)) from None
    if (values["max_memory_bytes"] or 1 << 20) < MIN_MEMORY_BUDGET_BYTES:
        raise MemoryCommandError("--max-memory must be at least 64KiB, e.g. 256MB")
    set_values(context, {k: v for k, v in values.items() if v is not None})
    if limit is not None:  # 0 means "no MEM_LIMIT", as in jupyter-resource-usage
        os.environ["MEM_LIMIT"] = str(limit)
    manager, real = context.manager, read_memory_limit()
    return {
        "max_sessions": manager.max_sessions,
        "max_memory_bytes": manager.max_memory_bytes,
        "max_recent": manager.policy.max_recent,
        "memory_limit_bytes": real.bytes,
        "memory_limit_source": f"{real.source} ({real.detail})",
    }


_POLICY_KEYS = ("max_recent", "max_recent_bytes", "max_summary_chars")


def config_rows(context: KernelContext) -> list[Row]:
    config = context.config
    return [
        (key, "***" if _SECRET.search(key) else repr(getattr(config, key)), doc)
        for key, doc in config.settable().items()
    ]


def set_config(context: KernelContext, assignments: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> traits set on ``context.config`` (all or nothing)."""
    traits = context.config.traits(config=True)
    values: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = (part.strip() for part in item.partition("="))
        if not sep or key not in traits:
            problem = f"unknown setting {key!r}" if sep else f"expected key=value, got {item!r}"
            raise MemoryCommandError(f"{problem}; valid keys: {', '.join(sorted(traits))}")
        try:
            values[key] = traits[key].from_string(text)
        except Exception as exc:
            raise MemoryCommandError(f"config {key}={text!r}: {exc}") from None
    return set_values(context, values)


def set_values(context: KernelContext, values: dict[str, Any]) -> dict[str, Any]:
    """Validate typed values on a scratch config, then set them and apply them live."""
    from jupyter_agentmem.agent.settings import AgentMem

    config = context.config
    for key, value in values.items():
        try:
            setattr(AgentMem(), key, value)
        except Exception as exc:
            raise MemoryCommandError(f"{key}={value!r}: {exc}") from None
    warn = values.get("warning_pct", config.warning_pct)
    crit = values.get("critical_pct", config.critical_pct)
    if not 0 < warn < crit <= 100:
        raise MemoryCommandError(f"need 0 < warning_pct < critical_pct <= 100, got {warn}, {crit}")
    if values.get("store_url", config.store_url) != config.store_url:
        try:  # moves every session; raises before anything changes if the URL is bad
            values["sessions_moved"] = context.switch_store(values["store_url"])
        except Exception as exc:
            raise MemoryCommandError(f"store_url={values['store_url']!r}: {exc}") from None
    for key, value in values.items():
        if key != "sessions_moved":
            setattr(config, key, value)
    _apply_live(context, values)
    return values


def _apply_live(context: KernelContext, values: dict[str, Any]) -> None:
    manager, monitor = context.manager, context.monitor
    for key in ("max_sessions", "max_memory_bytes", "idle_timeout"):
        if key in values:
            setattr(manager, key, values[key])
    policy = {k: values[k] for k in _POLICY_KEYS if k in values}
    if policy:  # states share the manager's policy object: all of them switch, live or evicted
        manager.update_policy(**policy)
    monitor.warning_pct = float(context.config.warning_pct)
    monitor.critical_pct = float(context.config.critical_pct)
    if values.get("memory_guard"):
        from jupyter_agentmem.watch.guard import install_guard

        install_guard(context)
    manager.enforce_budget()


# ------------------------------------------------------------------ rendering
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
    messages = list(doc.get("messages") or [])[-last:]
    where = "in memory" if doc.get("in_memory") else "in the store (not restored)"
    head = (
        f"session {doc['session_id']!r} ({where}): {doc.get('turns', 0)} turns, "
        f"{doc.get('messages_total', doc.get('total_turns', 0))} messages, "
        f"{doc.get('compactions', 0)} compactions, showing {len(messages)} recent messages"
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


# --------------------------------------------------------------------- parsing
def _parser(name: str, *args: tuple[tuple[str, ...], dict[str, Any]]) -> argparse.ArgumentParser:
    parser = MagicArgumentParser(prog=f"%agent_memory {name}", add_help=False)
    for flags, kwargs in args:
        parser.add_argument(*flags, **kwargs)
    return parser


SUBCOMMANDS: dict[str, argparse.ArgumentParser] = {
    "dashboard": _parser(
        "dashboard",
        (("--interval",), {"type": float}),
        (("--top",), {"type": int}),
        (("--detailed",), {"action": "store_true"}),
    ),
    "stats": _parser("stats", (("-o", "--out"), {"help": "store the dict in this variable"})),
    "sessions": _parser("sessions", (("-n",), {"type": int, "default": 20})),
    "show": _parser("show", (("session",), {}), (("-n",), {"type": int, "default": 20})),
    "compact": _parser(
        "compact", (("session",), {"nargs": "?"}), (("--all",), {"action": "store_true"})
    ),
    "evict": _parser("evict", (("session",), {"nargs": "?"}), (("--idle",), {"type": float})),
    "delete": _parser("delete", (("session",), {})),
    "limits": _parser(
        "limits",
        (("--max-sessions",), {"type": int}),
        (("--max-memory",), {}),
        (("--max-recent",), {"type": int}),
        (("--mem-limit",), {}),
    ),
    "config": _parser("config", (("assignments",), {"nargs": "*"})),
    "watch": _parser("watch", (("state",), {"nargs": "?", "choices": ("on", "off")})),
}
SUBCOMMAND_HELP = "\n".join(
    p.format_usage().strip().removeprefix("usage: ") for p in SUBCOMMANDS.values()
)


@magics_class
class MemoryMagics(Magics):
    """``%agent_memory``: dashboard, stats, sessions, limits, config, watch."""

    def __init__(self, shell: InteractiveShell | None, context: KernelContext) -> None:
        super().__init__(shell)
        self.context: KernelContext | None = context

    @magic_arguments()
    @argument("--interval", type=float, default=1.0, help="dashboard refresh seconds")
    @argument("--top", type=int, default=10, help="dashboard: how many largest sessions")
    @argument("--detailed", action="store_true", help="dashboard: also PSS/USS (slower)")
    @argument(
        "command",
        nargs="?",
        default="dashboard",
        choices=tuple(SUBCOMMANDS),
        help="sub-command (default: dashboard)",
    )
    @argument("args", nargs=argparse.REMAINDER, help="the sub-command's arguments")
    @line_magic
    def agent_memory(self, line: str) -> None:
        """Kernel memory and agent sessions. Sub-commands and their arguments:

        ``%agent_memory`` live dashboard; stats [-o VAR]; sessions [-n N];
        show SESSION [-n N]; compact [SESSION | --all]; evict SESSION | --idle
        SECONDS; delete SESSION; limits [--max-sessions N] [--max-memory 256MB]
        [--max-recent N] [--mem-limit 2GB]; config [key=value ...]; watch [on|off].
        """
        args = parse_argstring(self.agent_memory, line)
        if self.context is None:
            raise UsageError("jupyter-agentmem is not loaded: run %load_ext jupyter_agentmem")
        sub = SUBCOMMANDS[args.command].parse_args(args.args)
        try:
            getattr(self, f"_do_{args.command}")(self.context, sub, args)
        except MemoryCommandError as exc:
            raise UsageError(str(exc)) from None

    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _do_dashboard(self, ctx: KernelContext, sub: Any, args: Any) -> None:
        from jupyter_agentmem.watch.snapshot import has_widget_frontend, kernel_snapshot

        args.interval = args.interval if sub.interval is None else sub.interval
        args.top = args.top if sub.top is None else sub.top
        args.detailed |= sub.detailed
        if args.interval < MIN_INTERVAL_SECONDS or args.top < 1:
            raise MemoryCommandError(
                f"--interval must be >= {MIN_INTERVAL_SECONDS} s and --top >= 1"
            )
        if not has_widget_frontend(self.shell):
            print(format_text(kernel_snapshot(ctx, args.top, args.detailed), args.top))
            return
        from jupyter_agentmem.watch.dashboard import open_dashboard  # ipywidgets: kernels only

        display(open_dashboard(ctx, args.interval, args.top, args.detailed))

    def _do_stats(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        data = stats(ctx)
        if sub.out is not None:
            if not sub.out.isidentifier():
                raise MemoryCommandError(f"-o {sub.out!r} is not a valid variable name")
            self.namespace[sub.out] = data
        show_table("agent memory stats", ("name", "value"), stats_rows(data))

    def _do_sessions(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        rows, total = sessions(ctx, max(1, sub.n))
        table: list[Row] = [
            (
                r["session_id"],
                "yes" if r["in_memory"] else "no",
                r.get("messages", ""),
                human_bytes(r["estimated_bytes"]) if "estimated_bytes" in r else "",
                r.get("turns", ""),
            )
            for r in rows
        ]
        show_table(
            f"{len(rows)} of {total} sessions",
            ("session", "in memory", "messages", "bytes", "turns"),
            table,
        )

    def _do_show(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        show(*render_session(session_document(ctx, sub.session), max(1, sub.n)))

    def _do_compact(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        if sub.session and sub.all:
            raise MemoryCommandError("give a SESSION or --all, not both")
        done = compact(ctx, sub.session)
        show(
            f"compacted {done} session(s)"
            if sub.session is None
            else f"compacted {sub.session!r}"
            if done
            else f"{sub.session!r}: nothing to fold yet"
        )

    def _do_evict(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        if (sub.session is None) == (sub.idle is None):
            raise MemoryCommandError("give a SESSION or --idle SECONDS (one of them)")
        if sub.idle is not None:
            show(f"evicted {ctx.manager.evict_idle(sub.idle)} session(s) idle >= {sub.idle:g} s")
        elif not ctx.manager.evict(sub.session):
            raise MemoryCommandError(f"session {sub.session!r} is not in memory")
        else:
            show(f"evicted {sub.session!r} to the store")

    def _do_delete(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        if not ctx.manager.delete(sub.session):
            raise MemoryCommandError(f"no session {sub.session!r}")
        show(f"deleted {sub.session!r} from memory and the store")

    def _do_limits(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        now = apply_limits(ctx, sub.max_sessions, sub.max_memory, sub.max_recent, sub.mem_limit)
        show_table("limits", ("name", "value"), [(k, v) for k, v in now.items()])

    def _do_config(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        if sub.assignments:
            changed = set_config(ctx, sub.assignments)
            show("set " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
        else:
            show_table(
                "settings (%agent_memory config key=value)",
                ("key", "value", "help"),
                config_rows(ctx),
            )

    def _do_watch(self, ctx: KernelContext, sub: Any, _args: Any) -> None:
        from jupyter_agentmem.watch.ticker import get_watcher, history, set_watch

        if sub.state is not None:
            set_watch(ctx, sub.state == "on", self.shell)
        on = get_watcher(ctx) is not None
        recent = history()[-5:]
        show(
            f"per-cell memory watch: {'on' if on else 'off'}; last cells: "
            + ("; ".join(describe_dict(r) for r in recent) or "none")
        )


def describe_dict(r: dict[str, Any]) -> str:
    return f"In [{r['execution_count']}] {r['delta'] / 2**20:+.1f} MiB ({r['seconds']:.2f} s)"


def register(shell: InteractiveShell, context: KernelContext) -> MemoryMagics:
    """Register ``%agent_memory`` for ``context``; it reports "not loaded" after unload."""
    magics = MemoryMagics(shell, context)
    shell.register_magics(magics)

    def detach() -> None:
        magics.context = None

    context.add_closer("%agent_memory", detach)
    return magics
