"""The product's demo model server (jupyter_agentmem.demo): real SDK over loopback HTTP/SSE,
bounded, and gone without a thread after stop()."""

from __future__ import annotations

import threading
import time

import openai

from jupyter_agentmem.demo import DemoServer

USER = [{"role": "user", "content": "hello demo"}]


def demo_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(DemoServer.THREAD_PREFIX)]


def test_demo_server_streams_the_demo_model_through_the_real_sdk() -> None:
    with DemoServer(delay=0.0) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="demo", max_retries=0)
        stream = client.chat.completions.create(model="demo", messages=USER, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.startswith("(demo model) You said: 'hello demo'")
        assert server.request_count == 1
        assert server.requests == []  # the product keeps no request bodies by default
        assert [m.id for m in client.models.list()] == ["demo"]
        assert demo_threads()
    assert not demo_threads()
    assert server.errors == []


def test_demo_server_stop_cuts_a_slow_stream_and_is_idempotent() -> None:
    server = DemoServer(delay=5.0).start()  # each chunk 5 s apart: stop() must not wait
    client = openai.OpenAI(base_url=server.base_url, api_key="demo", max_retries=0)
    stream = client.chat.completions.create(model="demo", messages=USER, stream=True)
    next(iter(stream))  # the first chunk is sent at once
    start = time.perf_counter()
    server.stop()
    server.stop()
    assert time.perf_counter() - start < 2.0
    stream.close()
    assert not demo_threads()
