"""%agent_serve in a real kernel: the kernel's own manager and tools over HTTP, from a thread."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from jupyter_agentmem.testing import FakeModelServer

from .kernel import Kernel
from .serve_helpers import Event, chat, parse_sse, text_of

pytestmark = pytest.mark.kernel

KEY = "sk-test-secret-key-0123456789"


@pytest.fixture(scope="module")
def kernel(model: FakeModelServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(
        tmp_path_factory.mktemp("serve-kernel"),
        {"OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": KEY},
    )
    k.ok(
        textwrap.dedent(
            """
            %load_ext jupyter_agentmem
            import sys
            from jupyter_agentmem import agent_tool, get_manager
            from jupyter_agentmem.notebook.namespace import session_id
            from jupyter_agentmem.notebook.extension import get_context
            get_context().config.max_retries = 0
            get_context().config.summarizer = "extractive"

            @agent_tool
            def kernel_secret(word: str) -> str:
                \"\"\"Something only this kernel knows.\"\"\"
                return f"the kernel says {word}!"
            """
        )
    )
    yield k
    k.shutdown()


def test_load_ext_does_not_import_fastapi(kernel: Kernel) -> None:
    assert kernel.value("'fastapi' in sys.modules or 'uvicorn' in sys.modules") is False


def test_served_from_the_kernel_and_the_kernel_stays_responsive(
    kernel: Kernel, model: FakeModelServer
) -> None:
    kernel.ok("server = %agent_serve --port 0")
    url = kernel.value("server.url")
    assert kernel.value("'fastapi' in sys.modules") is True
    shown = kernel.ok("server").result
    assert shown is not None and url in shown["text/plain"] and "stop" in shown["text/plain"]
    answer = "".join(f"part{i} " for i in range(40))
    model.enqueue_text(answer, chunk_size=6, delay=0.04)  # ~1.6 s of streaming
    events: list[Event] = []
    with httpx.Client(base_url=url, timeout=10) as client:

        def read() -> None:
            body = {"session": "shared", "message": "hi"}
            with client.stream("POST", "/chat", json=body) as response:
                for event in parse_sse(response.iter_lines()):
                    events.append(event)

        reader = threading.Thread(target=read)
        reader.start()
        while not any(e.event == "delta" for e in events):
            time.sleep(0.01)
        started = time.monotonic()
        assert kernel.value("6 * 7") == 42  # a cell runs while the stream is being served
        elapsed = time.monotonic() - started
        assert reader.is_alive() and elapsed < 1.0
        reader.join(10)
    assert text_of(events) == answer
    # one manager: %%agent -s shared continues the HTTP conversation
    model.enqueue_text("continued in the notebook")
    kernel.ok("%%agent -s shared --no-stream\nand now?")
    sent = model.requests[-1]["messages"]
    assert [m["content"] for m in sent[-3:]] == ["hi", answer, "and now?"]
    sid = "get_manager().get(session_id('shared'))"  # the notebook's own id for -s shared
    assert kernel.value(f"len({sid}.recent_messages)") == 4


def test_http_turns_use_the_kernels_tools(kernel: Kernel, model: FakeModelServer) -> None:
    url = kernel.value("server.url")
    model.enqueue_tool_calls([{"name": "kernel_secret", "arguments": {"word": "hello"}}])
    model.enqueue_text("done")
    with httpx.Client(base_url=url, timeout=10) as client:
        events = chat(client, "tools", "ask the kernel")
    result = next(e for e in events if e.event == "tool_result").data
    assert "the kernel says hello!" in result["content"]


def test_stop_and_unload_free_the_port(kernel: Kernel) -> None:
    port = kernel.value("server.port")
    stopped = kernel.ok("%agent_serve stop")
    assert "stopped" in stopped.stdout
    refused(port)
    kernel.ok(f"server = %agent_serve --port {port}")  # the same port is free again
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    kernel.ok("%unload_ext jupyter_agentmem")
    refused(port)
    threads = "[t.name for t in threading.enumerate() if t.name.startswith('agentmem-serve')]"
    kernel.ok("import threading")
    assert kernel.value(threads) == []
    kernel.ok("%load_ext jupyter_agentmem")


def refused(port: int) -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_non_loopback_without_tokens_is_refused(kernel: Kernel) -> None:
    out = kernel.execute("%agent_serve --host 0.0.0.0 --port 0")
    stderr = "".join(
        m["content"]["text"] for _, m in out.of_type("stream") if m["content"]["name"] == "stderr"
    )
    assert out.status == "error" and "UsageError" in stderr and "--tokens-file" in stderr
