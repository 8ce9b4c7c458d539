"""``%agent_serve``: serve the kernel's own agent over HTTP from a background thread.

The server uses the kernel's SessionManager, settings and registered
``@agent_tool`` functions, so a session continued over HTTP is the very object
``%%agent -s`` sees. uvicorn runs on a daemon thread with its own event loop
(an asyncio task in the kernel's loop would freeze while a cell runs), and it
is a resource of the kernel context: ``%agent_serve stop``, ``%unload_ext`` and
kernel shutdown stop it and free the port. fastapi/uvicorn are imported only
when the magic runs, so ``%load_ext`` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import namespace

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .context import KernelContext

RESOURCE = "http server"


@dataclass(frozen=True)
class Serving:
    """What ``%agent_serve`` started (``server = %agent_serve`` keeps it)."""

    url: str
    port: int
    tenants: bool

    def __repr__(self) -> str:
        auth = "Bearer tokens required" if self.tenants else "no tokens: loopback only"
        return (
            f"serving the kernel's agent at {self.url} ({auth}): POST /chat streams answers, "
            f"GET / is a chat page; `%agent_serve stop` stops it"
        )


@magics_class
class ServeMagics(Magics):
    """``%agent_serve [--port N] [--host H] [--tokens-file F]`` and ``%agent_serve stop``."""

    def __init__(self, shell: InteractiveShell, context: KernelContext) -> None:
        super().__init__(shell)
        self.context = context

    @magic_arguments()
    @argument("action", nargs="?", choices=("start", "stop", "status"), default="start")
    @argument("--port", type=int, default=8000, help="TCP port (0: any free port).")
    @argument("--host", default="127.0.0.1", help="Address (off loopback needs --tokens-file).")
    @argument("--tokens-file", help="Lines of `TOKEN TENANT` (Bearer tokens per tenant).")
    @line_magic
    def agent_serve(self, line: str) -> Any:
        """Serve this kernel's agent over HTTP (POST /chat as server-sent events)."""
        args = parse_argstring(self.agent_serve, line)
        current = self.context.find(RESOURCE)
        if args.action == "stop":
            if current is None or not self.context.release(RESOURCE):
                print("no server is running")
            else:
                print(f"stopped the server at {current.url}")
            return None
        if args.action == "status" or current is not None:
            if current is None:
                print("no server is running: %agent_serve [--port N] starts one")
                return None
            if args.action == "start":
                print("already serving; `%agent_serve stop` first to change the port")
            return _describe(current)
        return _describe(self._start(args))

    def _start(self, args: Any) -> Any:
        try:
            from jupyter_agentmem.serve import create_app
            from jupyter_agentmem.serve.auth import Tenants, check_bind, read_tokens_file
            from jupyter_agentmem.serve.runner import BackgroundServer
        except ImportError as exc:
            raise UsageError(
                f"serving needs the [serve] extra ({exc.name} is missing): "
                "pip install 'jupyter-agentmem[serve]'"
            ) from exc
        from jupyter_agentmem.errors import AgentMemError

        try:
            tokens = read_tokens_file(args.tokens_file) if args.tokens_file else None
            check_bind(args.host, Tenants(tokens))

            def start() -> BackgroundServer:
                app = create_app(
                    self.context.agent,
                    tokens=tokens,
                    monitor=self.context.monitor,
                    local_ids=KernelIds(self.shell),
                )
                return BackgroundServer(app, args.host, args.port).start()

            return self.context.resource(RESOURCE, start, lambda server: server.stop())
        except (AgentMemError, OSError) as exc:
            raise UsageError(str(exc)) from exc


class KernelIds:
    """Without tokens, an HTTP session name means what ``%%agent -s NAME`` means in this
    notebook (its namespace; a name with a colon is shared), so both faces continue one
    conversation; other notebooks' sessions are not listed."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell

    def key(self, name: str) -> str:
        return namespace.qualify(name, namespace.current(self.shell))

    def name(self, key: str) -> str | None:
        owner, name = namespace.split(key)
        if owner is None:
            return key
        return name if owner == namespace.current(self.shell) else None


def _describe(server: Any) -> Serving:
    return Serving(server.url, server.port, server.app.state.agentmem.tenants.enabled)


def register(shell: InteractiveShell, context: KernelContext) -> None:
    shell.register_magics(ServeMagics(shell, context))
