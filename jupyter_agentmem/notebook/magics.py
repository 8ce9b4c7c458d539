"""``%agent`` (one line) and ``%%agent`` (a cell): parse, interpolate, delegate. Nothing else.

Both forms share one option declaration (:data:`OPTIONS`, IPython's
``magic_arguments``), so ``%agent?`` and ``%%agent?`` show the same options
under the right usage line. The turn itself is
:class:`~jupyter_agentmem.agent.chat.Agent` (no IPython in it) and the cell
output is :class:`~jupyter_agentmem.notebook.render.CellRenderer`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.utils.process import arg_split  # type: ignore[attr-defined]

from jupyter_agentmem.errors import NotLoadedError
from jupyter_agentmem.model.prompt import interpolate_prompt, unknown_notice

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .context import KernelContext

_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# Typed views of IPython's untyped helpers (mypy --strict).
argument = cast(Callable[..., _Decorator], _ma.argument)
magic_arguments = cast(Callable[..., _Decorator], _ma.magic_arguments)
line_magic_named = cast(Callable[[str], _Decorator], line_magic)
cell_magic_named = cast(Callable[[str], _Decorator], cell_magic)

#: The options of both forms, declared once (outermost first, as in the help).
OPTIONS: tuple[_Decorator, ...] = (
    argument(
        "-s",
        "--session",
        default="default",
        help="Conversation to continue: this notebook's NAME, or a shared TEAM:NAME.",
    ),
    argument("--shared", action="store_true", help="-s NAME is shared by every notebook."),
    argument("-m", "--model", help="Model for this cell (e.g. gpt-4o-mini, llama3, demo)."),
    argument("--system", help="System message for this cell instead of the configured one."),
    argument("--no-stream", action="store_true", help="Show the answer only when complete."),
    argument(
        "-f",
        "--format",
        choices=("markdown", "text", "code"),
        default="markdown",
        help="markdown (default), text, or code: put the answer's code in a new cell.",
    ),
    argument("--tools", help="Comma-separated tool or function names (default: all registered)."),
    argument("--no-tools", action="store_true", help="Offer no tools to the model."),
    argument("--temperature", type=float, help="Sampling temperature."),
    argument("--max-tokens", type=int, help="Limit the answer length in tokens."),
    argument("-o", "--out", help="Also store the answer in this variable."),
)


def with_options(name: str, *extra: _Decorator) -> _Decorator:
    """Apply :data:`OPTIONS` (then ``extra``) and build the parser; ``name`` is the usage's
    magic name after IPython's ``%`` (``"%agent"`` gives ``%%agent``)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for deco in reversed((*OPTIONS, *extra)):
            fn = deco(fn)
        return magic_arguments(name)(fn)

    return decorate


def parser_of(magic: Callable[..., Any]) -> argparse.ArgumentParser:
    """The parser ``magic_arguments`` attached to ``magic``."""
    parser: argparse.ArgumentParser = magic.parser  # type: ignore[attr-defined]
    return parser


def split_question(parser: argparse.ArgumentParser, line: str) -> tuple[Any, str]:
    """``%agent`` line -> (options, question): options parsed by the shared parser, the
    question kept exactly as typed (quotes, apostrophes, spacing and braces included)."""
    tokens = shell_words(line)
    args = parser.parse_args(tokens)
    n_options = len(tokens) - len(args.question)
    if n_options == 0:
        return args, line.strip()
    for gap in re.finditer(r"\s+", line):  # the first gap after which the options are complete
        if shell_words(line[: gap.start()]) == tokens[:n_options]:
            question = line[gap.end() :].strip()
            if args.question[:1] == ["--"]:  # `%agent -s x -- -5 degrees?`
                question = question.removeprefix("--").lstrip()
            return args, question
    return args, ""


def shell_words(line: str) -> list[str]:
    """Words as a shell reads them (``--system "Be terse."`` gives ``Be terse.``, without
    the quotes that IPython's default non-POSIX split keeps); an open quote runs to the end."""
    words: list[str] = arg_split(line, posix=True, strict=False)
    return words


@magics_class
class AgentMagics(Magics):
    """``%agent QUESTION`` and ``%%agent`` (the cell body is your message)."""

    def __init__(self, shell: InteractiveShell, context: KernelContext) -> None:
        super().__init__(shell)
        self.context: KernelContext | None = context

    @no_var_expand
    @with_options(
        "agent",
        argument("question", nargs=argparse.REMAINDER, help="Your question (to the line end)."),
    )
    @line_magic_named("agent")
    def agent_line(self, line: str) -> Any:
        """Send a one-line question to the model and stream the answer into the cell.

        Same options as ``%%agent``; the question follows them, as typed.
        ``{name}`` inserts a notebook variable. The answer is the cell's result.
        """
        parser = parser_of(self.agent_line)
        args, question = split_question(parser, line)
        if not question:
            raise UsageError("write your question after the options: %agent -s NAME question")
        return self._run(args, question)

    @with_options("%agent")
    @cell_magic_named("agent")
    def agent_cell(self, line: str, cell: str) -> Any:
        """Send the cell to the model and stream the answer into the cell.

        ``{name}`` inserts a notebook variable; ``{{name}}`` sends a literal
        ``{name}``; JSON and code are sent as written. The answer becomes the
        cell's result, so ``_`` holds it.
        ``%agent QUESTION`` is the one-line form, with the same options.
        """
        parser = parser_of(self.agent_cell)
        args = parser.parse_args(shell_words(line))
        if not cell.strip():
            raise UsageError("the cell is empty: write your message below %%agent")
        return self._run(args, cell.strip("\n"))

    def _run(self, args: Any, text: str) -> Any:
        if self.context is None:
            raise UsageError(str(NotLoadedError()))
        if args.tools and args.no_tools:
            raise UsageError("use --tools NAMES or --no-tools, not both")
        if args.out is not None and not args.out.isidentifier():
            raise UsageError(f"-o {args.out!r} is not a valid variable name")
        namespace = self.shell.user_ns if self.shell is not None else {}
        interpolated = interpolate_prompt(text, namespace)
        prompt = interpolated.text
        notice = unknown_notice(interpolated.unknown)
        if notice is not None:
            from IPython.display import Markdown, display

            display(Markdown(f"*{notice}*"))
        tools: Any = False if args.no_tools else None
        if args.tools:
            tools = [name.strip() for name in args.tools.split(",") if name.strip()]
        from . import namespace as ns
        from .cell import insert_code, run_agent_cell

        session = ns.qualify(args.session, ns.current(self.shell), args.shared)
        restored = ns.continuing_notice(self.context, session)
        if restored:
            print(restored)
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
            insert_code(self.shell, answer)
        return answer


def register(shell: InteractiveShell, context: KernelContext) -> AgentMagics:
    """Register ``%agent`` and ``%%agent`` for ``context``; unloading detaches them (they
    then say "not loaded") and forgets the tools registered while loaded."""
    magics = AgentMagics(shell, context)
    shell.register_magics(magics)

    def detach() -> None:
        from jupyter_agentmem.model.tools import default_registry

        magics.context = None
        for name in default_registry.names():
            default_registry.unregister(name)

    context.add_closer("%agent", detach)
    return magics
