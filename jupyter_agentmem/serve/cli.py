"""``jupyter-agentmem serve``: the notebook's agent behind uvicorn, from the command line.

Settings are the magics' own: ``c.AgentMem.*`` from the IPython profile's
``ipython_config.py`` (or ``--config FILE``), then the environment
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``AGENTMEM_MODEL``); no key and no
endpoint means the offline demo model. Options reach uvicorn's workers through
one environment variable (they import :func:`app_from_env`), so ``--workers N``
is uvicorn's own process manager; SIGTERM stops them gracefully (runs are
cancelled with their partial answers stored, sessions flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from jupyter_agentmem.errors import AgentMemError

OPTIONS_ENV = "AGENTMEM_SERVE_OPTIONS"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="jupyter-agentmem", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Serve the agent over HTTP (POST /chat, SSE).")
    serve.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port).")
    serve.add_argument(
        "--store", help="Session store URL (sqlite:///path, redis://..., memory://)."
    )
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes.")
    serve.add_argument("--tokens-file", help="Lines of `TOKEN TENANT`; required off loopback.")
    serve.add_argument("--config", help="A traitlets config file (default: the IPython profile's).")
    serve.add_argument("--log-level", default="info", help="uvicorn log level.")
    return top


def load_settings(config_file: str | None = None) -> Any:
    """``AgentMem`` from a traitlets config file (default: the IPython profile's), as the magics."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    from jupyter_agentmem.agent.settings import AgentMem

    if config_file is None:
        from IPython.paths import get_ipython_dir

        default = os.path.join(get_ipython_dir(), "profile_default", "ipython_config.py")
        config_file = default if os.path.exists(default) else None
    config = Config()
    if config_file is not None:
        if not os.path.exists(config_file):
            raise AgentMemError(f"no config file {config_file!r}: check the --config path")
        folder, name = os.path.split(os.path.abspath(config_file))
        config = PyFileConfigLoader(name, folder).load_config()
    return AgentMem(config=config)


def app_from_env() -> Any:
    """The app a uvicorn worker serves, built from the options the CLI put in the environment."""
    from .app import create_app, default_agent
    from .auth import read_tokens_file

    options = json.loads(os.environ.get(OPTIONS_ENV, "{}"))
    tokens = read_tokens_file(options["tokens_file"]) if options.get("tokens_file") else None
    config = load_settings(options.get("config"))
    agent = default_agent(config, options.get("store"))
    return create_app(agent, tokens=tokens, close_agent=True)


def serve(args: argparse.Namespace) -> None:
    """Check everything that can be checked before binding, then hand over to uvicorn."""
    import uvicorn

    from .auth import Tenants, check_bind, read_tokens_file

    tokens = read_tokens_file(args.tokens_file) if args.tokens_file else None
    check_bind(args.host, Tenants(tokens))
    if args.workers < 1:
        raise AgentMemError("--workers must be at least 1")
    if args.store:
        from jupyter_agentmem.stores import open_store

        open_store(args.store).close()  # a bad URL or unreachable server fails here, clearly
    load_settings(args.config)
    os.environ[OPTIONS_ENV] = json.dumps(
        {"store": args.store, "tokens_file": args.tokens_file, "config": args.config}
    )
    uvicorn.run(
        "jupyter_agentmem.serve.cli:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        serve(args)
    except (AgentMemError, ValueError, OSError) as exc:
        print(f"jupyter-agentmem: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
