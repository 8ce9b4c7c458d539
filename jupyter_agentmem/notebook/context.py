"""The kernel context: every long-lived resource of the extension in one kernel.

One :class:`KernelContext` per kernel owns the SessionManager and its store, the
memory monitor, background threads, the demo model server and event callbacks.
Each resource registers a closer when it is created, and closing runs them in
reverse order, so ``%reload_ext`` leaves exactly one of everything and kernel
shutdown flushes live sessions. The magics, the cell runner and the watch
helpers take a context; only :mod:`.extension` creates and closes one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from jupyter_agentmem.agent.settings import AgentMem

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_agentmem.agent.chat import Agent
    from jupyter_agentmem.memory.manager import SessionManager
    from jupyter_agentmem.watch.monitor import MemoryMonitor

log = logging.getLogger(__name__)

T = TypeVar("T")


class KernelContext:
    """Everything the extension owns in one kernel."""

    def __init__(self, shell: InteractiveShell | None, config: AgentMem) -> None:
        from jupyter_agentmem.watch.monitor import MemoryMonitor

        self.shell = shell
        self.config = config
        self._closers: list[tuple[str, Callable[[], None]]] = []
        self._resources: dict[str, tuple[Any, Callable[[], None]]] = {}
        self._lock = threading.RLock()
        self._agent: Agent | None = None
        self.manager: SessionManager = config.session_manager()
        self.add_closer("session manager", self.manager.close)
        self.monitor: MemoryMonitor = MemoryMonitor(
            warning_pct=config.warning_pct,
            critical_pct=config.critical_pct,
            session_count=self.manager.__len__,
        )

    def resource(
        self,
        name: str,
        factory: Callable[[], T],
        close: Callable[[T], None],
        alive: Callable[[T], bool] | None = None,
    ) -> T:
        """The context's one ``name`` resource (a thread, a hook...): created on first use
        (again if ``alive`` says it died), closed at unload with everything else."""
        with self._lock:
            entry = self._resources.get(name)
            if entry is not None and (alive is None or alive(entry[0])):
                return cast(T, entry[0])
            value = factory()

            def closer() -> None:
                close(value)

            self._resources[name] = (value, closer)
            self.add_closer(name, closer)
            return value

    def find(self, name: str) -> Any | None:
        """A resource made by :meth:`resource`, or None if it was never made."""
        with self._lock:
            entry = self._resources.get(name)
            return None if entry is None else entry[0]

    def release(self, name: str) -> bool:
        """Close one resource now (not waiting for unload); False if there was none."""
        with self._lock:
            entry = self._resources.pop(name, None)
            if entry is None:
                return False
            self.remove_closer(entry[1])
        entry[1]()
        return True

    def add_closer(self, name: str, closer: Callable[[], None]) -> None:
        """Register cleanup to run at unload / shutdown (last registered runs first)."""
        with self._lock:
            self._closers.append((name, closer))

    def remove_closer(self, closer: Callable[[], None]) -> None:
        with self._lock:
            self._closers = [(n, c) for n, c in self._closers if c is not closer]

    @property
    def agent(self) -> Agent:
        """The kernel's Agent, built on first use (imports openai only then)."""
        with self._lock:
            if self._agent is None:
                from jupyter_agentmem.agent.chat import Agent

                self._agent = Agent(self.manager, self.config)
                self.add_closer("agent", self._agent.close)
            return self._agent

    def switch_store(self, url: str) -> int:
        """Open the store at ``url`` and move every session there (see
        ``SessionManager.replace_store``); a bad URL or unreachable server raises
        before anything changes. Returns how many persisted sessions were copied."""
        from jupyter_agentmem.stores import open_store

        store = open_store(url or None)
        return self.manager.replace_store(store)

    def remember_settings(self) -> None:
        """Keep run-time settings (``%agent_memory config``/``limits``) for the next load,
        so ``%reload_ext`` does not silently fall back to another store or model."""
        if self.shell is None:
            return
        section = self.shell.config.AgentMem
        for name in self.config.traits(config=True):
            section[name] = getattr(self.config, name)

    def close(self) -> None:
        """Run every closer once, newest first; errors are logged, never raised."""
        with self._lock:
            closers, self._closers = self._closers[::-1], []
            self._resources.clear()
        for name, closer in closers:
            try:
                closer()
            except Exception:
                log.exception("jupyter-agentmem: closing the %s failed", name)
