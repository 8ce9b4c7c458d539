"""Settings changed at run time take effect at once, whichever way they are changed.

The kernel's :class:`~jupyter_agentmem.agent.settings.AgentMem` is registered in
``shell.configurables``, so IPython's own ``%config AgentMem.max_sessions = 50``
reaches it; ``%agent_memory config``/``limits`` set the same traits. Either way
traitlets validates once (all or nothing within one update) and the observers
here push the new values to the manager, the monitor, the guard and the store.
Unloading removes the observers and the configurable again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_agentmem.errors import AgentMemError, mask_credentials

if TYPE_CHECKING:
    from .context import KernelContext

MANAGER_KEYS = ("max_sessions", "max_memory_bytes", "idle_timeout")
POLICY_KEYS = ("max_recent", "max_recent_bytes", "max_summary_chars")
MONITOR_KEYS = ("warning_pct", "critical_pct", "mem_limit")
WATCHED = (*MANAGER_KEYS, *POLICY_KEYS, *MONITOR_KEYS, "memory_guard", "store_url", "durable_turns")


class SettingError(AgentMemError, ValueError):
    """A setting was refused; the message says which and what is accepted."""


class LiveSettings:
    """Observes the context's settings and applies each change to what it governs."""

    def __init__(self, context: KernelContext) -> None:
        self.context = context
        self.store_url = context.config.store_url  # the URL of the store in use
        self.sessions_moved: int | None = None  # by the last store switch

    def apply(self, change: Any) -> None:
        name, new = change["name"], change["new"]
        ctx = self.context
        manager, monitor = ctx.manager, ctx.monitor
        if name == "store_url":
            self._switch_store(new)
        elif name in MANAGER_KEYS:
            setattr(manager, name, new)
        elif name in POLICY_KEYS:  # states share the manager's policy: all of them switch
            manager.update_policy(**{name: new})
        elif name == "mem_limit":
            monitor.mem_limit = int(new)
        elif name in MONITOR_KEYS:
            setattr(monitor, name, float(new))
        elif name == "durable_turns":  # None: on for a store that outlives the kernel
            manager.set_durable_turns(None if new else False)
        elif name == "memory_guard" and new:
            from jupyter_agentmem.watch.guard import install_guard

            install_guard(ctx)
        if name in (*MANAGER_KEYS, *POLICY_KEYS):
            manager.enforce_budget()

    def _switch_store(self, url: str) -> None:
        """Move every session to the store at ``url``; on failure the setting goes back."""
        if url == self.store_url:
            return
        try:
            self.sessions_moved = self.context.switch_store(url)
        except Exception as exc:
            self.context.config.store_url = self.store_url  # observed again: a no-op
            raise SettingError(mask_credentials(f"store_url={url!r}: {exc}")) from None
        self.store_url = url

    def bind(self) -> None:
        self.context.config.observe(self.apply, names=list(WATCHED))
        shell = self.context.shell
        configurables: list[Any] = shell.configurables if shell is not None else []
        if self.context.config not in configurables:
            configurables.append(self.context.config)

    def unbind(self) -> None:
        config, shell = self.context.config, self.context.shell
        config.unobserve(self.apply, names=list(WATCHED))
        if shell is not None:
            configurables: list[Any] = shell.configurables
            configurables[:] = [c for c in configurables if c is not config]


def bind_settings(context: KernelContext) -> LiveSettings:
    """Apply settings live for ``context`` (idempotent); undone at unload."""

    def create() -> LiveSettings:
        live = LiveSettings(context)
        live.bind()
        context.monitor.mem_limit = context.config.mem_limit
        return live

    return context.resource("live settings", create, LiveSettings.unbind)
