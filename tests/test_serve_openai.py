"""The OpenAI-compatible facade with the real openai SDK, and /metrics in Prometheus format."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jupyter_agentmem.testing import FakeModelServer

from .serve_helpers import ALICE, BOB, TOKENS, Served, chat, make_agent


@pytest.fixture(scope="module")
def served(model: FakeModelServer) -> Iterator[Served]:
    agent = make_agent(model)
    srv = Served(agent, tokens=TOKENS)
    yield srv
    srv.close()
    agent.close()


def sdk(served: Served, token: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=token, max_retries=0, timeout=10)


def test_sdk_without_streaming_keeps_memory_on_the_server(
    served: Served, model: FakeModelServer
) -> None:
    client = sdk(served)
    model.enqueue_text("Paris.")
    first = client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "Capital of France?"}],
        user="geo",
    )
    assert first.choices[0].message.content == "Paris."
    assert first.usage is not None and first.usage.completion_tokens > 0
    model.enqueue_text("About 2 million people.")
    second = client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "And its population?"}],  # only the new message
        user="geo",
    )
    assert second.choices[0].message.content == "About 2 million people."
    sent = [m["content"] for m in model.requests[-1]["messages"] if m["role"] != "system"]
    assert sent == ["Capital of France?", "Paris.", "And its population?"]


def test_sdk_streaming_with_session_header(served: Served, model: FakeModelServer) -> None:
    client = sdk(served)
    model.enqueue_text("streamed through the facade", chunk_size=4, delay=0.02)
    stream = client.chat.completions.create(
        model="test-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "stream please"},
        ],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Session-Id": "streamy"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed through the facade"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 2
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert model.requests[-1]["messages"][0] == {"role": "system", "content": "Be brief."}
    with served.client(ALICE) as alice:
        assert alice.get("/sessions/streamy").json()["messages"][1]["content"] == text


def test_sdk_sees_errors_and_tenants(served: Served, model: FakeModelServer) -> None:
    model.enqueue_error(500, "upstream broke")
    with pytest.raises(openai.APIStatusError) as failed:
        sdk(served).chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "hi"}], user="err"
        )
    assert failed.value.status_code == 502
    assert "upstream broke" in failed.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.AuthenticationError):
        sdk(served, "wrong-token-wrong-token").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], user="x"
        )
    with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
        sdk(served).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert "X-Session-Id" in unprocessable.value.body["message"]  # type: ignore[index]
    with served.client(BOB) as bob:
        assert bob.get("/sessions/geo").status_code == 404  # alice's facade session


def test_metrics_in_prometheus_format(served: Served, model: FakeModelServer) -> None:
    with served.client(ALICE) as alice:
        model.enqueue_text("counted")
        chat(alice, "metered", "count me")
        response = alice.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=")
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        value = {
            name: families[name].samples[0].value
            for name in (
                "agentmem_sessions_in_memory",
                "agentmem_session_bytes",
                "agentmem_process_rss_bytes",
                "agentmem_memory_limit_bytes",
                "agentmem_evictions",
            )
        }
        assert value["agentmem_sessions_in_memory"] >= 1 and value["agentmem_session_bytes"] > 0
        assert 0 < value["agentmem_process_rss_bytes"] <= value["agentmem_memory_limit_bytes"]
        runs = {s.labels["outcome"]: s.value for s in families["agentmem_runs"].samples}
        assert runs["done"] >= 1 and runs["started"] >= runs["done"]
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
