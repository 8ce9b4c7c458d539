"""``%agent_memory``: look at and steer the kernel's agent memory from a notebook.

The Magics class only parses (one ``magic_arguments`` parser with argparse
sub-commands: generated help, a one-line ``UsageError`` for any bad input) and
delegates to :mod:`.memory_commands` (what to do) and :mod:`.memory_views`
(what to show). Settings are traitlets: ``config`` is a short alias of IPython's
``%config AgentMem.<name> = value``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from IPython import display as _ipython_display
from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from jupyter_agentmem.errors import NotLoadedError
from jupyter_agentmem.units import MIN_INTERVAL_SECONDS

from . import memory_commands as cmd
from .magics import parser_of
from .memory_commands import MemoryCommandError
from .memory_views import describe_cell, render_session, session_rows, show, show_table

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .context import KernelContext

__all__ = ["MemoryCommandError", "MemoryMagics", "register"]
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# Typed views of IPython's untyped helpers (mypy --strict).
argument = cast(Callable[..., _Decorator], _ma.argument)
magic_arguments = cast(Callable[[], _Decorator], _ma.magic_arguments)
parse_argstring = cast(Callable[[Callable[..., Any], str], Any], _ma.parse_argstring)
display = cast(Callable[..., None], _ipython_display.display)
Spec = tuple[tuple[str, ...], dict[str, Any]]
_KEEP = argparse.SUPPRESS  # a dashboard flag after the sub-command only overrides if given

#: sub-command -> (help, its arguments)
SUBCOMMANDS: dict[str, tuple[str, list[Spec]]] = {
    "dashboard": (
        "live dashboard (the default)",
        [
            (("--interval",), {"type": float, "default": _KEEP}),
            (("--top",), {"type": int, "default": _KEEP}),
            (("--detailed",), {"action": "store_true", "default": _KEEP}),
        ],
    ),
    "stats": ("memory and counters", [(("-o", "--out"), {"help": "raw numbers in this var"})]),
    "sessions": (
        "list sessions",
        [
            (("-n",), {"type": int, "default": 20}),
            (("--all",), {"action": "store_true", "help": "every notebook's sessions"}),
            (("--adopt",), {"metavar": "OLD_PATH", "help": "take over a renamed notebook's"}),
        ],
    ),
    "show": ("one session", [(("session",), {}), (("-n",), {"type": int, "default": 20})]),
    "compact": (
        "fold old turns now",
        [(("session",), {"nargs": "?"}), (("--all",), {"action": "store_true"})],
    ),
    "evict": (
        "move to the store",
        [(("session",), {"nargs": "?"}), (("--idle",), {"type": float})],
    ),
    "delete": ("forget a session", [(("session",), {})]),
    "limits": (
        "budgets and memory limit",
        [
            (("--max-sessions",), {"type": int}),
            (("--max-memory",), {}),
            (("--max-recent",), {"type": int}),
            (("--mem-limit",), {}),
        ],
    ),
    "config": ("settings (%%config AgentMem)", [(("assignments",), {"nargs": "*"})]),
    "watch": ("per-cell memory", [(("state",), {"nargs": "?", "choices": ("on", "off")})]),
}


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    """The sub-commands as argparse sub-parsers of the magic's own parser."""
    subs = parser.add_subparsers(dest="command", title="sub-commands")
    for name, (help_text, specs) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, add_help=False)
        for flags, kwargs in specs:
            sub.add_argument(*flags, **kwargs)


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
    @line_magic
    def agent_memory(self, line: str) -> None:
        """Kernel memory and agent sessions. Sub-commands and their arguments:

        ``%agent_memory`` live dashboard; stats [-o VAR]; sessions [-n N] [--all]
        [--adopt OLD_PATH];
        show SESSION [-n N]; compact [SESSION | --all]; evict SESSION | --idle
        SECONDS; delete SESSION; limits [--max-sessions N] [--max-memory 256MB]
        [--max-recent N] [--mem-limit 2GB]; config [key=value ...] (or IPython's
        ``%config AgentMem.key = value``); watch [on|off].
        """
        args = parse_argstring(self.agent_memory, line)
        if self.context is None:
            raise UsageError(str(NotLoadedError()))
        if getattr(args, "session", None):  # this notebook's NAME first, else a shared id
            from .namespace import resolve

            args.session_id = resolve(self.context, args.session)
        try:
            getattr(self, f"_do_{args.command or 'dashboard'}")(self.context, args)
        except MemoryCommandError as exc:
            raise UsageError(str(exc)) from None

    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def _do_dashboard(self, ctx: KernelContext, args: Any) -> None:
        from jupyter_agentmem.watch.snapshot import (
            format_text,
            has_widget_frontend,
            kernel_snapshot,
        )

        if args.interval < MIN_INTERVAL_SECONDS or args.top < 1:
            raise MemoryCommandError(
                f"--interval must be >= {MIN_INTERVAL_SECONDS} s and --top >= 1"
            )
        if not has_widget_frontend(self.shell):
            print(format_text(kernel_snapshot(ctx, args.top, args.detailed), args.top))
            return
        from jupyter_agentmem.watch.dashboard import open_dashboard  # ipywidgets: kernels only

        display(open_dashboard(ctx, args.interval, args.top, args.detailed))

    def _do_stats(self, ctx: KernelContext, args: Any) -> None:
        from .memory_views import stats_rows

        data = cmd.stats(ctx)
        if args.out is not None:
            if not args.out.isidentifier():
                raise MemoryCommandError(f"-o {args.out!r} is not a valid variable name")
            self.namespace[args.out] = data
        show_table("agent memory stats", ("name", "value"), stats_rows(data))

    def _do_sessions(self, ctx: KernelContext, args: Any) -> None:
        from . import namespace as ns
        from .memory_views import SESSION_HEADERS

        if args.adopt is not None:
            if not args.adopt.strip():
                raise MemoryCommandError("give the old path: --adopt work/old-name.ipynb")
            old, new = ns.notebook_namespace(args.adopt), ns.current(self.shell)
            try:
                moved = ns.adopt(ctx.manager, old, new)
            except ns.NamespaceError as exc:
                raise MemoryCommandError(str(exc)) from None
            show(f"moved {len(moved)} session(s) from {old} to this notebook: {moved}")
            return
        rows, total = cmd.sessions(ctx, max(1, args.n), args.all)
        if args.all:
            table = [
                (r["namespace"], *row) for r, row in zip(rows, session_rows(rows), strict=True)
            ]
            headers = ("namespace", *SESSION_HEADERS)
            show_table(f"{len(rows)} of {total} sessions in every namespace", headers, table)
            return
        show_table(f"{len(rows)} of {total} sessions", SESSION_HEADERS, session_rows(rows))

    def _do_show(self, ctx: KernelContext, args: Any) -> None:
        show(*render_session(cmd.session_document(ctx, args.session_id), max(1, args.n)))

    def _do_compact(self, ctx: KernelContext, args: Any) -> None:
        if args.session and args.all:
            raise MemoryCommandError("give a SESSION or --all, not both")
        done = cmd.compact(ctx, args.session_id if args.session else None)
        show(
            f"compacted {done} session(s)"
            if args.session is None
            else f"compacted {args.session!r}"
            if done
            else f"{args.session!r}: nothing to fold yet"
        )

    def _do_evict(self, ctx: KernelContext, args: Any) -> None:
        if (args.session is None) == (args.idle is None):
            raise MemoryCommandError("give a SESSION or --idle SECONDS (one of them)")
        if args.idle is not None:
            show(f"evicted {ctx.manager.evict_idle(args.idle)} session(s) idle >= {args.idle:g} s")
        elif not ctx.manager.evict(args.session_id):
            raise MemoryCommandError(f"session {args.session!r} is not in memory")
        else:
            show(f"evicted {args.session!r} to the store")

    def _do_delete(self, ctx: KernelContext, args: Any) -> None:
        if not ctx.manager.delete(args.session_id):
            raise MemoryCommandError(f"no session {args.session!r}")
        show(f"deleted {args.session!r} from memory and the store")

    def _do_limits(self, ctx: KernelContext, args: Any) -> None:
        now = cmd.apply_limits(
            ctx, args.max_sessions, args.max_memory, args.max_recent, args.mem_limit
        )
        show_table("limits", ("name", "value"), list(now.items()))

    def _do_config(self, ctx: KernelContext, args: Any) -> None:
        if args.assignments:
            changed = cmd.set_config(ctx, args.assignments)
            show("set " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))
        else:
            title = "settings (%config AgentMem.key = value, or %agent_memory config key=value)"
            show_table(title, ("key", "value", "help"), cmd.config_rows(ctx))

    def _do_watch(self, ctx: KernelContext, args: Any) -> None:
        from jupyter_agentmem.watch.ticker import get_watcher, history, set_watch

        if args.state is not None:
            set_watch(ctx, args.state == "on", self.shell)
        on = get_watcher(ctx) is not None
        recent = history()[-5:]
        show(
            f"per-cell memory watch: {'on' if on else 'off'}; last cells: "
            + ("; ".join(describe_cell(r) for r in recent) or "none")
        )


add_subcommands(parser_of(MemoryMagics.agent_memory))
MemoryMagics.agent_memory.__doc__ = parser_of(MemoryMagics.agent_memory).format_help()


def register(shell: InteractiveShell, context: KernelContext) -> MemoryMagics:
    """Register ``%agent_memory`` for ``context``; after unload it says "not loaded", and
    the per-cell watch history is forgotten."""
    magics = MemoryMagics(shell, context)
    shell.register_magics(magics)

    def detach() -> None:
        from jupyter_agentmem.watch.ticker import clear_history

        magics.context = None
        clear_history()

    context.add_closer("%agent_memory", detach)
    return magics
