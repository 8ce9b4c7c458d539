"""User settings, the Jupyter way: traitlets on one Configurable.

``c.AgentMem.model = "gpt-4o-mini"`` in ``ipython_config.py``, or at run time
IPython's own ``%config AgentMem.model = "llama3"`` (the loaded extension registers
its settings in ``shell.configurables`` and applies changes live) or the short alias
``%agent_memory config model=llama3 base_url=http://127.0.0.1:11434/v1``.
The usual environment variables are honoured when a trait is left empty:
``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and ``AGENTMEM_MODEL``. API keys are
never a trait: they are read from the environment when a client is built, so
they cannot end up in a config file, a notebook or a session store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Enum, Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from jupyter_agentmem.errors import mask_credentials
from jupyter_agentmem.memory import defaults
from jupyter_agentmem.units import MIN_MEMORY_BUDGET_BYTES

if TYPE_CHECKING:
    from jupyter_agentmem.memory.manager import SessionManager

MiB = 1024 * 1024
DEMO_MODEL = "demo"
DEFAULT_REAL_MODEL = "gpt-4o-mini"


class MaskedURL(str):
    """A URL setting whose ``repr`` hides any password, so every display of the setting
    (``%config AgentMem.store_url``, ``%config AgentMem``, listings) masks it; the
    string itself is unchanged, for the code that connects."""

    __slots__ = ()

    def __repr__(self) -> str:
        return mask_credentials(super().__repr__())


class AgentMem(Configurable):
    """Settings of the jupyter-agentmem extension (``c.AgentMem.<name>``).

    Validators raise ``TraitError``: within one update (``%config``, ``update_config``)
    traitlets then rolls every change back, so a bad value changes nothing."""

    model = Unicode(
        "",
        help="Model name. Empty: $AGENTMEM_MODEL, else the offline demo model when no "
        "API key or base_url is set, else gpt-4o-mini.",
    ).tag(config=True)
    base_url = Unicode(
        "",
        help="OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp, LM Studio). Empty: "
        "$OPENAI_BASE_URL, else OpenAI.",
    ).tag(config=True)
    api_key_env = Unicode(
        "OPENAI_API_KEY", help="Name of the environment variable holding the API key."
    ).tag(config=True)
    demo_delay = Float(
        0.015, help="Seconds between the built-in demo model's streamed chunks (its pace)."
    ).tag(config=True)
    system_prompt = Unicode(
        "You are a helpful assistant inside a Jupyter notebook. Answer in Markdown.",
        help="System message sent before the conversation (not stored in the session).",
    ).tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature.").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Answer length limit in tokens.").tag(config=True)
    timeout = Float(60.0, help="Seconds before a model request times out.").tag(config=True)
    max_retries = Int(2, help="SDK retries for 429/5xx/connection errors.").tag(config=True)
    max_tool_rounds = Int(8, help="Tool-call rounds allowed in one cell.").tag(config=True)
    tool_max_chars = Int(2000, help="Tool results are truncated to this many characters.").tag(
        config=True
    )

    max_recent = Int(defaults.MAX_RECENT, help="Recent messages kept verbatim per session.").tag(
        config=True
    )
    max_recent_bytes = Int(
        defaults.MAX_RECENT_BYTES, help="Bytes of recent messages per session."
    ).tag(config=True)
    max_summary_chars = Int(
        defaults.MAX_SUMMARY_CHARS, help="Bound of each session's running summary."
    ).tag(config=True)
    summarizer = Enum(
        ["auto", "extractive", "llm"],
        default_value="auto",
        help="How old turns are summarised: 'llm' uses the chat model, 'extractive' needs no "
        "model, 'auto' picks llm for a real model and extractive for the demo model.",
    ).tag(config=True)
    max_sessions = Int(
        defaults.MAX_SESSIONS, help="Sessions kept in memory before LRU eviction."
    ).tag(config=True)
    max_memory_bytes = Int(
        defaults.MAX_MEMORY_BYTES, help="Global byte budget of in-memory sessions."
    ).tag(config=True)
    idle_timeout = Float(
        None, allow_none=True, help="Evict sessions idle for this many seconds (None: never)."
    ).tag(config=True)
    tier_bytes = Int(
        0,
        help="Bytes of evicted sessions kept zlib-compressed in memory before the store "
        "(0: off). Pays with many idle sessions in one process (a server, a hub).",
    ).tag(config=True)
    store_url = Unicode(
        "",
        help="Where evicted sessions go: sqlite:///path, redis://host:port/db, memory://. "
        "Empty: a SQLite file in the Jupyter data directory.",
    ).tag(config=True)

    render_interval = Float(0.05, help="Minimum seconds between streamed display updates.").tag(
        config=True
    )
    render_bytes_per_second = Int(
        400_000, help="Upper bound of bytes re-sent per second while streaming."
    ).tag(config=True)
    durable_turns = Bool(
        True,
        help="Append every finished turn to the store's turn log at once (a kernel killed "
        "with SIGKILL loses nothing finished); False for throw-away work.",
    ).tag(config=True)
    memory_guard = Bool(
        True, help="Evict sessions when the process reaches the critical memory level."
    ).tag(config=True)
    guard_interval = Float(2.0, help="Seconds between memory-pressure checks.").tag(config=True)
    warning_pct = Float(75.0, help="Memory use (% of the real limit) shown as warning.").tag(
        config=True
    )
    critical_pct = Float(90.0, help="Memory use (% of the real limit) that triggers eviction.").tag(
        config=True
    )
    mem_limit = Int(
        0,
        help="The kernel's memory limit in bytes for the monitor and guard, like MEM_LIMIT "
        "(0: the cgroup limit, $MEM_LIMIT or system RAM, whichever is smallest).",
    ).tag(config=True)

    @validate("max_recent", "max_sessions", "max_tool_rounds", "tool_max_chars")
    def _positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be at least 1")
        return int(proposal["value"])

    @validate("store_url", "base_url")
    def _masked(self, proposal: dict[str, Any]) -> str:
        return MaskedURL(proposal["value"])

    @validate("warning_pct", "critical_pct")
    def _levels(self, proposal: dict[str, Any]) -> float:
        levels = {"warning_pct": self.warning_pct, "critical_pct": self.critical_pct}
        levels[proposal["trait"].name] = proposal["value"]
        warn, crit = levels["warning_pct"], levels["critical_pct"]
        if not 0 < warn < crit <= 100:
            raise TraitError(f"need 0 < warning_pct < critical_pct <= 100, got {warn}, {crit}")
        return float(proposal["value"])

    @validate("max_memory_bytes", "mem_limit")
    def _sizes(self, proposal: dict[str, Any]) -> int:
        name, value = proposal["trait"].name, int(proposal["value"])
        if value < 0 or (value < MIN_MEMORY_BUDGET_BYTES and (name == "max_memory_bytes" or value)):
            raise TraitError(f"{name} must be at least 64KiB, e.g. 256MB")
        return value

    def endpoint(self) -> Endpoint:
        """Resolve model, base_url and key source from traits and environment."""
        key_present = bool(os.environ.get(self.api_key_env))
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL", "")
        model = self.model or os.environ.get("AGENTMEM_MODEL", "")
        if model == DEMO_MODEL or (not model and not key_present and not base_url):
            return Endpoint(DEMO_MODEL, "", is_demo=True, defaulted=not model)
        return Endpoint(model or DEFAULT_REAL_MODEL, base_url, is_demo=False, defaulted=False)

    def session_manager(self, store_url: str | None = None) -> SessionManager:
        """A SessionManager with these budgets over ``store_url`` (default: the
        ``store_url`` setting), as the kernel and the server both build it."""
        from jupyter_agentmem.memory.manager import SessionManager
        from jupyter_agentmem.stores import open_store

        return SessionManager(
            max_sessions=self.max_sessions,
            max_memory_bytes=self.max_memory_bytes,
            store=open_store(store_url if store_url is not None else self.store_url or None),
            idle_timeout=self.idle_timeout,
            max_recent=self.max_recent,
            max_recent_bytes=self.max_recent_bytes,
            max_summary_chars=self.max_summary_chars,
            durable_turns=None if self.durable_turns else False,
            tier_bytes=self.tier_bytes,
        )

    def settable(self) -> dict[str, str]:
        """Trait name -> help, for ``%agent_memory config`` and the README."""
        return {name: str(trait.help) for name, trait in sorted(self.traits(config=True).items())}


@dataclass(frozen=True)
class Endpoint:
    """Which model the next ``%%agent`` cell talks to (no key in here)."""

    model: str
    base_url: str
    is_demo: bool
    defaulted: bool
