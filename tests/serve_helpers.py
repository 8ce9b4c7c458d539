"""Shared pieces of the HTTP-server tests: a served agent on a free loopback port, SSE parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.model.tools import ToolRegistry
from jupyter_agentmem.serve import create_app
from jupyter_agentmem.serve.runner import BackgroundServer
from jupyter_agentmem.stores import MemoryStore
from jupyter_agentmem.testing import FakeModelServer

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef00"
TOKENS = {ALICE: "alice", BOB: "bob"}


@dataclass
class Event:
    event: str
    id: str | None
    data: dict[str, Any]


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Events of a text/event-stream, in order (a strict little parser for the tests)."""
    event, ident, data = "message", None, []
    for line in lines:
        if line == "":
            if data:
                yield Event(event, ident, json.loads("\n".join(data)))
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "id":
                ident = value
            elif name == "data":
                data.append(value)


def make_agent(model_server: FakeModelServer, registry: ToolRegistry | None = None) -> Agent:
    config = AgentMem(
        base_url=model_server.base_url,
        model="test-model",
        max_retries=0,
        timeout=3.0,
        summarizer="extractive",
        tool_max_chars=200,
    )
    return Agent(SessionManager(store=MemoryStore()), config, registry or ToolRegistry())


class Served:
    """A real uvicorn serving ``create_app(agent, **options)`` on 127.0.0.1:free port."""

    def __init__(self, agent: Agent, **options: Any) -> None:
        self.agent = agent
        self.app = create_app(agent, **options)
        self.server = BackgroundServer(self.app).start()
        self.url = self.server.url

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0, **options)

    def close(self) -> None:
        self.server.stop()


def chat(client: httpx.Client, session: str, message: str, **params: Any) -> list[Event]:
    """POST /chat and read the whole stream."""
    with client.stream(
        "POST", "/chat", json={"session": session, "message": message}, params=params
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(response.iter_lines()))


def text_of(events: list[Event]) -> str:
    return "".join(e.data["text"] for e in events if e.event == "delta")
