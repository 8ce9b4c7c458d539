"""The ``%%agent`` cell magic: parse, interpolate, delegate. Nothing else lives here.

The turn itself is :class:`~jupyter_agentmem.agent.chat.Agent` (no IPython in it) and
the cell output is :class:`~jupyter_agentmem.notebook.render.CellRenderer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from jupyter_agentmem.model.prompt import interpolate

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .context import KernelContext


@magics_class
class AgentMagics(Magics):
    """``%%agent``: the cell body is your message to the model."""

    def __init__(self, shell: InteractiveShell, context: KernelContext) -> None:
        super().__init__(shell)
        self.context = context

    @magic_arguments()
    @argument(
        "-s",
        "--session",
        default="default",
        help="Conversation to continue: this notebook's NAME, or a shared TEAM:NAME.",
    )
    @argument("--shared", action="store_true", help="-s NAME is shared by every notebook.")
    @argument("-m", "--model", help="Model for this cell (e.g. gpt-4o-mini, llama3, demo).")
    @argument("--system", help="System message for this cell instead of the configured one.")
    @argument("--no-stream", action="store_true", help="Show the answer only when complete.")
    @argument(
        "-f",
        "--format",
        choices=("markdown", "text", "code"),
        default="markdown",
        help="markdown (default), text, or code: put the answer's code in a new cell.",
    )
    @argument("--tools", help="Comma-separated tool or function names (default: all registered).")
    @argument("--no-tools", action="store_true", help="Offer no tools to the model.")
    @argument("--temperature", type=float, help="Sampling temperature.")
    @argument("--max-tokens", type=int, help="Limit the answer length in tokens.")
    @argument("-o", "--out", help="Also store the answer in this variable.")
    @cell_magic
    def agent(self, line: str, cell: str) -> Any:
        """Send the cell to the model and stream the answer into the cell.

        ``{name}`` inserts a notebook variable (``{{`` and ``}}`` are literal
        braces). The answer becomes the cell's result, so ``_`` holds it.
        """
        args = parse_argstring(self.agent, line)
        if not cell.strip():
            raise UsageError("the cell is empty: write your message below %%agent")
        if args.tools and args.no_tools:
            raise UsageError("use --tools NAMES or --no-tools, not both")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o {args.out!r} is not a valid variable name")
        namespace = self.shell.user_ns if self.shell is not None else {}
        prompt = interpolate(cell.strip("\n"), namespace)
        tools: Any = False if args.no_tools else None
        if args.tools:
            tools = [name.strip() for name in args.tools.split(",") if name.strip()]
        from . import namespace as ns
        from .cell import run_agent_cell

        session = ns.qualify(args.session, ns.current(self.shell), args.shared)
        notice = ns.continuing_notice(self.context, session)
        if notice:
            print(notice)
        answer = run_agent_cell(
            self.context,
            prompt,
            session=session,
            model=args.model,
            system=args.system,
            tools=tools,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            namespace=namespace,
            live=not args.no_stream,
            output_format=args.format,
        )
        self.context.manager.sync_log()  # the finished turn is on disk when the cell ends
        if args.out:
            namespace[args.out] = answer
        if args.format == "code":
            from .render import code_blocks

            if self.shell is not None:
                self.shell.set_next_input(code_blocks(answer), replace=False)
        return answer
