"""README's Python API: the snippet runs as written, and a tool result needs its call."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_agentmem import ConversationState
from jupyter_agentmem.errors import InvalidMessageError

REPO = Path(__file__).resolve().parent.parent


def python_api_snippet() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "README's Python API section has no python block"
    return match.group(1)


def test_the_python_api_snippet_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PYTHONPATH"] = str(REPO)
    code = python_api_snippet() + (
        "\ntool = next(i for i, m in enumerate(context) if m['role'] == 'tool')"
        "\nassert context[tool - 1]['tool_calls'][0]['id'] == context[tool]['tool_call_id']"
        "\nassert len(context[tool]['content']) <= 2_000 < len(huge_json)"
        "\njson.loads(context[tool]['content'])"
        "\nprint('\\nSNIPPET-OK')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("SNIPPET-OK")
    assert "demo model" in result.stdout.lower()  # answered offline by the demo model


def call(call_id: str) -> dict[str, object]:
    function = {"name": "lookup", "arguments": "{}"}
    return {"id": call_id, "type": "function", "function": function}


def test_a_tool_result_without_its_call_is_refused() -> None:
    state = ConversationState("orphan")
    state.add_message({"role": "user", "content": "hi"})
    with pytest.raises(InvalidMessageError, match=r"'call_1'.*add the assistant message"):
        state.add_tool_result("call_1", "data")
    state.add_message({"role": "assistant", "content": None, "tool_calls": [call("call_1")]})
    state.add_tool_result("call_1", "data")
    with pytest.raises(InvalidMessageError, match="call_1"):
        state.add_tool_result("call_1", "again")  # answered already
    with pytest.raises(InvalidMessageError, match="call_2"):
        state.add_tool_result("call_2", "unknown id")
    assert [m["role"] for m in state.recent_messages] == ["user", "assistant", "tool"]


def test_parallel_results_may_come_in_any_order() -> None:
    state = ConversationState("parallel")
    calls = [call("a"), call("b")]
    state.add_message({"role": "assistant", "content": None, "tool_calls": calls})
    state.add_tool_result("b", "second")
    state.add_tool_result("a", "first")
    assert [m.get("tool_call_id") for m in state.recent_messages] == [None, "b", "a"]
