"""A real IPython kernel for tests: run code, collect IOPub messages with arrival times."""

from __future__ import annotations

import os
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Execution:
    """What one execute request produced."""

    reply: dict[str, Any]
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    started: float = 0.0

    @property
    def status(self) -> str:
        return str(self.reply["content"]["status"])

    def of_type(self, *types: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"]
            for _, m in self.of_type("stream")
            if m["content"]["name"] == "stdout"
        )

    @property
    def result(self) -> dict[str, Any] | None:
        results = self.of_type("execute_result")
        return results[-1][1]["content"]["data"] if results else None

    @property
    def error(self) -> dict[str, Any] | None:
        errors = self.of_type("error")
        return errors[-1][1]["content"] if errors else None


class Kernel:
    """Start a python3 kernel with the repository importable and a private data dir."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        kernel_env = dict(os.environ)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENTMEM_MODEL", "MEM_LIMIT"):
            kernel_env.pop(name, None)
        kernel_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), kernel_env.get("PYTHONPATH", "")) if p
        )
        kernel_env["JUPYTER_DATA_DIR"] = str(tmp / "jupyter-data")
        kernel_env["IPYTHONDIR"] = str(tmp / "ipython")
        kernel_env.update(env or {})
        self.manager = KernelManager(kernel_name="python3")
        self.manager.kernel_spec.argv[0] = sys.executable  # the test's interpreter, not PATH's
        self.manager.start_kernel(env=kernel_env, cwd=str(tmp))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(self, code: str, timeout: float = 60.0, on_message: Any = None) -> Execution:
        """Run ``code``; ``on_message(elapsed, msg)`` is called as IOPub messages arrive."""
        started = time.monotonic()
        msg_id = self.client.execute(code, allow_stdin=False)
        execution = Execution(reply={}, started=started)
        deadline = started + timeout
        idle = False
        while not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"kernel did not finish within {timeout} s: {code[:80]!r}")
            try:
                msg = self.client.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            elapsed = time.monotonic() - started
            execution.messages.append((elapsed, msg))
            if on_message is not None:
                on_message(elapsed, msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        while True:  # skip replies to earlier requests (e.g. after an interrupt)
            reply = self.client.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                execution.reply = reply
                return execution

    def ok(self, code: str, timeout: float = 60.0) -> Execution:
        """Run ``code`` and fail with the kernel's error if it raised."""
        execution = self.execute(code, timeout)
        if execution.status != "ok":
            error = execution.error or {}
            raise AssertionError(
                f"{error.get('ename')}: {error.get('evalue')}\n"
                + "\n".join(error.get("traceback", []))
            )
        return execution

    def value(self, expression: str) -> Any:
        """Evaluate ``expression`` in the kernel and return it (JSON round trip)."""
        import json

        out = self.ok(f"import json as _j; print(_j.dumps({expression}))")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)
