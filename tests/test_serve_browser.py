"""The chat page in Chromium (Playwright): answers stream in, memory shows, a reload resumes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jupyter_agentmem.agent.chat import Agent
from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.memory.manager import SessionManager
from jupyter_agentmem.stores import MemoryStore

from .serve_helpers import Served
from .test_browser import launch

pytestmark = pytest.mark.browser


@pytest.fixture
def served() -> Iterator[Served]:
    agent = Agent(SessionManager(store=MemoryStore()), AgentMem(model="demo", demo_delay=0.05))
    srv = Served(agent)
    yield srv
    srv.close()
    agent.close()


def lengths_while_streaming(page: Any, selector: str, seconds: float) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = page.locator(selector).last.text_content() or ""
        if not seen or len(text) != seen[-1]:
            seen.append(len(text))
        if "for a real one" in text:  # the demo answer's last words
            break
        time.sleep(0.03)
    return seen


def ask(page: Any, text: str) -> None:
    page.fill("#message", text)
    page.click("#send")


def test_answer_streams_and_the_follow_up_shows_memory(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        try:
            page = browser.new_page()
            page.goto(served.url + "/")
            ask(page, "What is in the sales table?")
            grew = lengths_while_streaming(page, ".msg.assistant", 20)
            assert len(grew) >= 5 and grew == sorted(grew)  # it grew in place, many times
            page.wait_for_function("document.getElementById('turns').textContent === '1'")
            first = page.locator(".msg.assistant").last.text_content() or ""
            assert "You said: 'What is in the sales table?'" in first
            ask(page, "And the follow-up?")
            page.wait_for_function("document.getElementById('turns').textContent === '2'")
            second = page.locator(".msg.assistant").last.text_content() or ""
            # the demo model reports the context it received: the first turn came along
            assert "I received 4 messages" in second
            assert int(page.locator("#messages_total").text_content() or 0) == 4
            assert int(page.locator("#estimated_bytes").text_content() or 0) > 0
        finally:
            browser.close()


def test_a_reload_resumes_the_stream(served: Served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        try:
            page = browser.new_page()
            page.goto(served.url + "/")
            ask(page, "A long question to reload during")
            page.wait_for_function(
                "document.querySelectorAll('.msg.assistant').length > 0 && "
                "document.querySelector('.msg.assistant').textContent.length > 30"
            )
            page.reload()
            page.wait_for_function("document.getElementById('status').textContent.length > 0")
            assert "resuming run" in (page.locator("#status").text_content() or "")
            page.wait_for_function("document.getElementById('turns').textContent === '1'")
            shown = page.locator(".msg.assistant").all_text_contents()
            stored = httpx.get(f"{served.url}/sessions/web").json()["messages"][1]["content"]
            assert shown == [stored]  # the whole answer once: nothing lost, nothing twice
            assert page.locator(".msg.user").all_text_contents() == [
                "A long question to reload during"
            ]
        finally:
            browser.close()
