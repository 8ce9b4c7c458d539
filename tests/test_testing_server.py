"""FakeModelServer and the demo model, exercised through the real openai SDK over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from jupyter_agentmem.testing import DemoReply, FakeModelServer, demo_reply
from jupyter_agentmem.testing.demo import SUMMARY_PREFIX

USER = [{"role": "user", "content": "hi"}]
ADD_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "metric": {"type": "boolean"},
                "days": {"type": "integer"},
            },
            "required": ["city", "metric"],
        },
    },
}


def client_for(server: FakeModelServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-secret-123", **kwargs)


def raw(server: FakeModelServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A plain stdlib HTTP request, to check the wire format without the SDK in between."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Authorization": "Bearer sk-raw-secret-456"})
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload.decode()


# -- wire format ------------------------------------------------------------------------------


def test_streamed_text_is_openai_shaped(srv: FakeModelServer) -> None:
    srv.enqueue_text("Hello world", chunk_size=4)
    stream = client_for(srv).chat.completions.create(
        model="gpt-x", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.model == "gpt-x" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    pieces = [c.choices[0].delta.content for c in chunks[1:4]]
    assert pieces == ["Hell", "o wo", "rld"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 1 + 3


def test_usage_only_when_requested(srv: FakeModelServer) -> None:
    srv.enqueue_text("abc")
    srv.enqueue_text("abc", usage=False)
    client = client_for(srv)
    plain = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert all(c.choices for c in plain)
    opts = {"include_usage": True}
    no_usage = list(
        client.chat.completions.create(model="m", messages=USER, stream=True, stream_options=opts)
    )
    assert all(c.choices for c in no_usage)


def test_non_stream_completion(srv: FakeModelServer) -> None:
    srv.enqueue_text("Hello", finish_reason="length")
    srv.enqueue_tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}])
    client = client_for(srv)
    first = client.chat.completions.create(model="m", messages=USER)
    assert first.object == "chat.completion"
    assert first.choices[0].message.content == "Hello"
    assert first.choices[0].finish_reason == "length"
    second = client.chat.completions.create(model="m", messages=USER)
    call = second.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id == "call_1" and json.loads(call.function.arguments) == {"a": 1, "b": 2}  # type: ignore[union-attr]


def test_tool_call_deltas_split_arguments(srv: FakeModelServer) -> None:
    calls = [
        {"name": "add", "arguments": {"a": 1, "b": 2}},
        {"name": "get_weather", "arguments": {"city": "Paris", "metric": True}},
    ]
    srv.enqueue_tool_calls(calls, chunk_size=5)
    chunks = list(client_for(srv).chat.completions.create(model="m", messages=USER, stream=True))
    fragments = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    heads = [f for f in fragments if f.id]
    assert [(h.index, h.id, h.type, h.function.name) for h in heads] == [  # type: ignore[union-attr]
        (0, "call_1", "function", "add"),
        (1, "call_2", "function", "get_weather"),
    ]
    by_index: dict[int, str] = {}
    for f in fragments:
        by_index[f.index] = by_index.get(f.index, "") + (f.function.arguments or "")  # type: ignore[union-attr]
    assert json.loads(by_index[1]) == {"city": "Paris", "metric": True}
    assert sum(1 for f in fragments if f.index == 1 and f.function.arguments) > 3  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_models_endpoint_lists_demo_and_seen_models(srv: FakeModelServer) -> None:
    srv.enqueue_text("x")
    client = client_for(srv)
    client.chat.completions.create(model="llama-3", messages=USER)
    assert [m.id for m in client.models.list()] == ["demo", "llama-3"]


def test_unknown_endpoint_is_openai_style_404(srv: FakeModelServer) -> None:
    status, body = raw(srv, "GET", "/v1/nothing")
    assert status == 404
    assert set(body["error"]) >= {"message", "type", "code"}
    status, body = raw(srv, "POST", "/v1/completions", {"prompt": "x"})
    assert status == 404 and "Unknown endpoint" in body["error"]["message"]


def test_empty_queue_without_default_is_clear_500(srv: FakeModelServer) -> None:
    status, body = raw(srv, "POST", "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 500
    assert "no scripted reply queued" in body["error"]["message"]


def test_bad_json_body_is_400(srv: FakeModelServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=b"{nope")
    assert conn.getresponse().status == 400
    conn.close()


def test_requests_are_recorded_bounded_and_without_headers() -> None:
    with FakeModelServer(default=None, max_requests_kept=3) as server:
        for n in range(5):
            server.enqueue_text("ok")
            raw(server, "POST", "/v1/chat/completions", {"model": f"m{n}", "messages": USER})
        assert server.request_count == 5
        assert [r["model"] for r in server.requests] == ["m2", "m3", "m4"]
        assert "sk-raw-secret-456" not in json.dumps(server.requests)
        assert server.requests is not server.requests  # a copy each time


def test_error_headers_pass_through(srv: FakeModelServer) -> None:
    srv.enqueue_error(503, "overloaded", headers={"Retry-After": "7"})
    with pytest.raises(openai.InternalServerError) as info:
        client_for(srv).chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "service_unavailable"


# -- streaming behaviour, concurrency and life cycle ------------------------------------------


def test_first_chunk_reaches_client_before_last_is_sent(srv: FakeModelServer) -> None:
    srv.enqueue_text("abcdefghij", chunk_size=1, delay=0.05)  # 0.45 s from first to last
    client = client_for(srv)
    arrivals = []
    for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    assert len(arrivals) == 10
    # Buffered output would deliver all ten together; flushed output spreads them out.
    assert arrivals[-1] - arrivals[0] > 0.3


def test_concurrent_requests_are_served_in_parallel(srv: FakeModelServer) -> None:
    for _ in range(4):
        srv.enqueue_text("abcdefghij", chunk_size=1, delay=0.05)  # ~0.5 s each
    client = client_for(srv)
    texts: list[str] = []

    def run() -> None:
        stream = client.chat.completions.create(model="m", messages=USER, stream=True)
        texts.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    start = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert texts == ["abcdefghij"] * 4
    assert time.perf_counter() - start < 1.5  # sequential would take 2 s


def _server_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("FakeModelServer")}


def test_stop_leaves_no_thread_frees_port_and_does_not_wait_for_hangs() -> None:
    before = set(threading.enumerate())
    server = FakeModelServer(default="demo", demo_delay=0.0).start()
    port = server.port
    client = client_for(server, timeout=0.3)
    server.enqueue_hang(30)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=USER)
    server.enqueue_hang(30)
    hanging = socket.create_connection(("127.0.0.1", port))  # a client that never finishes
    hanging.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    deadline = time.monotonic() + 5
    while server.pending and time.monotonic() < deadline:  # the raw request took the hang
        time.sleep(0.01)
    idle = socket.create_connection(("127.0.0.1", port))  # connected, sends nothing
    list(client.chat.completions.create(model="m", messages=USER, stream=True))
    time.sleep(0.05)
    assert _server_threads()
    start = time.perf_counter()
    server.stop()
    server.stop()  # idempotent
    assert time.perf_counter() - start < 2.0
    assert not _server_threads()
    assert set(threading.enumerate()) <= before
    assert server.errors == []
    hanging.close()
    idle.close()
    with FakeModelServer(port) as again:  # the port is free again
        assert again.port == port


def test_context_manager_and_restart() -> None:
    server = FakeModelServer(default=None)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    with server:
        assert server.running and server.base_url.endswith("/v1")
    assert not server.running
    server.start()
    server.enqueue_text("again")
    assert (
        "again"
        in raw(server, "POST", "/v1/chat/completions", {"messages": USER})[1]["choices"][0][
            "message"
        ]["content"]
    )
    server.stop()


def test_client_disconnect_is_counted(srv: FakeModelServer) -> None:
    srv.enqueue_text("x" * 200, chunk_size=1, delay=0.01)
    stream = client_for(srv).chat.completions.create(model="m", messages=USER, stream=True)
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 3
    while srv.client_disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.client_disconnects == 1


def test_callable_default_responder() -> None:
    def responder(body: Any) -> DemoReply:
        if body["messages"][-1]["content"] == "fail":
            raise ValueError("scripted failure")
        return DemoReply(text=f"echo {body['messages'][-1]['content']}")

    with FakeModelServer(default=responder) as server:
        client = client_for(server)
        answer = client.chat.completions.create(model="m", messages=USER)
        assert answer.choices[0].message.content == "echo hi"
        with pytest.raises(openai.InternalServerError, match="ValueError: scripted failure"):
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "fail"}]
            )
        assert len(server.errors) == 1


# -- the demo model ---------------------------------------------------------------------------


def test_demo_reply_says_it_is_the_demo_and_reports_context() -> None:
    body = {
        "model": "demo",
        "messages": [
            {"role": "system", "content": f"{SUMMARY_PREFIX}: we talked about cats."},
            {"role": "user", "content": "What is   the capital\nof France?"},
        ],
    }
    reply = demo_reply(body)
    assert reply.text is not None and not reply.tool_calls
    assert reply.text.startswith("(demo model) You said: 'What is the capital of France?'")
    assert "2 messages" in reply.text and "including a summary" in reply.text
    assert "OPENAI_API_KEY" in reply.text and "%agent_memory config" in reply.text
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    plain = demo_reply({"messages": [{"role": "user", "content": "x" * 500}]})
    assert plain.text is not None and "no summary" in plain.text and "..." in plain.text


def test_demo_calls_named_tools_with_arguments_from_the_prompt() -> None:
    text = 'Please add 2 and 40, then get_weather for city "Paris" with metric=true.'
    reply = demo_reply(
        {"messages": [{"role": "user", "content": text}], "tools": [WEATHER_TOOL, ADD_TOOL]}
    )
    assert reply.text is None
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [
        ("add", {"a": 2, "b": 40}),
        ("get_weather", {"city": "Paris", "metric": True}),
    ]
    defaults = demo_reply(
        {"messages": [{"role": "user", "content": "call get_weather"}], "tools": [WEATHER_TOOL]}
    )
    assert defaults.tool_calls[0].arguments == {"city": "", "metric": False}
    unnamed = demo_reply({"messages": [{"role": "user", "content": "adder"}], "tools": [ADD_TOOL]})
    assert unnamed.text is not None and "Tools available: add" in unnamed.text


def test_demo_summarises_tool_results_instead_of_calling_again() -> None:
    messages = [
        {"role": "user", "content": "add 1 2"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "3" + " " * 10 + "y" * 300},
    ]
    reply = demo_reply({"messages": messages, "tools": [ADD_TOOL]})
    assert reply.text is not None and not reply.tool_calls
    assert "1 tool result" in reply.text and "add returned 311 chars" in reply.text
    assert "(demo model)" in reply.text


def test_demo_model_through_the_sdk() -> None:
    with FakeModelServer(default="demo", demo_delay=0.0) as server:
        client = client_for(server)
        messages: list[Any] = [{"role": "user", "content": "please add 5 and 7"}]
        first = client.chat.completions.create(model="demo", messages=messages, tools=[ADD_TOOL])
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "add"  # type: ignore[union-attr]
        assert json.loads(call.function.arguments) == {"a": 5, "b": 7}  # type: ignore[union-attr]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "12"},
        ]
        stream = client.chat.completions.create(
            model="demo", messages=messages, tools=[ADD_TOOL], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert "add returned 2 chars: 12" in text and "demo model" in text


def test_demo_streams_at_a_realistic_pace() -> None:
    with FakeModelServer(default="demo", demo_delay=0.003, demo_chunk_size=5) as server:
        stream = client_for(server).chat.completions.create(
            model="demo", messages=USER, stream=True
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices]
    assert all(len(p) <= 5 for p in pieces if p)
    assert len(pieces) > 30


# -- the pytest plugin ------------------------------------------------------------------------


def test_pytest_plugin_fixture(tmp_path: Path) -> None:
    test_file = tmp_path / "test_uses_fixture.py"
    test_file.write_text(
        "import openai\n"
        "def test_it(fake_model):\n"
        "    fake_model.enqueue_text('scripted')\n"
        "    c = openai.OpenAI(base_url=fake_model.base_url, api_key='x', max_retries=0)\n"
        "    q = [{'role': 'user', 'content': 'q'}]\n"
        "    r = c.chat.completions.create(model='m', messages=q)\n"
        "    assert r.choices[0].message.content == 'scripted'\n"
        "    assert fake_model.pending == 0\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "jupyter_agentmem.testing.pytest_plugin",
            str(test_file),
        ],
        cwd=tmp_path,
        env={
            "PYTHONPATH": str(root),
            "PATH": "/usr/bin:/bin",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
