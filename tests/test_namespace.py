"""Notebook-scoped session ids, adoption after a rename, the "continuing" notice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from jupyter_agentmem.agent.settings import AgentMem
from jupyter_agentmem.notebook import extension
from jupyter_agentmem.notebook import namespace as ns


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    extension.unload()
    sh = InteractiveShell.instance()
    sh.user_ns["__session__"] = "work/old.ipynb"
    extension.load(sh, AgentMem(store_url=f"sqlite:///{tmp_path}/s.sqlite3"))
    yield sh
    extension.unload()
    sh.user_ns.pop("__session__", None)


@pytest.mark.parametrize(
    ("name", "shared", "expected"),
    [
        ("default", False, "notebook:work/a.ipynb::default"),
        ("default", True, "default"),
        ("team:churn", False, "team:churn"),
        ("a::b", False, "a::b"),
    ],
)
def test_qualify_and_split(name: str, shared: bool, expected: str) -> None:
    sid = ns.qualify(name, "notebook:work/a.ipynb", shared)
    assert sid == expected
    owner, short = ns.split(sid)
    assert (owner, short) == (("notebook:work/a.ipynb", name) if sid != name else (None, name))


def test_a_kernel_without_a_notebook_gets_its_own_namespace() -> None:
    class Bare:
        def __init__(self) -> None:
            self.user_ns: dict[str, object] = {}

    assert ns.current(Bare()).startswith("kernel:")
    assert (
        ns.current(type("S", (), {"user_ns": {"__session__": "x.ipynb"}})()) == "notebook:x.ipynb"
    )


def test_adopt_moves_a_renamed_notebooks_sessions(shell: InteractiveShell) -> None:
    manager = extension.get_manager()
    manager.get_or_create(ns.session_id("plan")).add_message({"role": "user", "content": "q"})
    manager.get_or_create("team:x").add_message({"role": "user", "content": "shared"})
    manager.flush()
    shell.user_ns["__session__"] = "work/new.ipynb"  # the notebook was renamed
    assert ns.session_id("plan") not in manager
    with capture_output() as out:
        shell.run_line_magic("agent_memory", "sessions --adopt work/old.ipynb")
    assert "moved 1 session(s)" in out.outputs[0].data["text/plain"]
    moved = manager.get(ns.session_id("plan"))
    assert moved is not None and moved.recent_messages == [{"role": "user", "content": "q"}]
    assert "notebook:work/old.ipynb::plan" not in manager
    assert manager.get("team:x") is not None  # shared sessions are nobody's to adopt
    shell.user_ns["__session__"] = "work/old.ipynb"
    manager.get_or_create(ns.session_id("plan")).add_message({"role": "user", "content": "new"})
    shell.user_ns["__session__"] = "work/new.ipynb"
    with pytest.raises(UsageError, match="already has session"):
        shell.run_line_magic("agent_memory", "sessions --adopt work/old.ipynb")
    assert manager.get("notebook:work/old.ipynb::plan") is not None  # refused: nothing moved


def test_sessions_lists_this_notebook_and_shared_ones_unless_all(shell: InteractiveShell) -> None:
    manager = extension.get_manager()
    manager.get_or_create(ns.session_id("mine")).add_message({"role": "user", "content": "1"})
    manager.get_or_create("notebook:other.ipynb::theirs").add_message(
        {"role": "user", "content": "2"}
    )
    manager.get_or_create("team:x").add_message({"role": "user", "content": "3"})
    with capture_output() as out:
        shell.run_line_magic("agent_memory", "sessions")
    assert "2 of 2 sessions" in out.outputs[0].data["text/plain"]
    text = out.outputs[0].data["text/plain"]
    assert "mine" in text and "team:x" in text and "theirs" not in text
    with capture_output() as out:
        shell.run_line_magic("agent_memory", "sessions --all")
    text = out.outputs[0].data["text/plain"]
    assert "3 of 3 sessions in every namespace" in text and "notebook:other.ipynb" in text
    with capture_output() as out:
        shell.run_line_magic("agent_memory", "show mine")  # names resolve in this notebook
    assert "session 'mine'" in out.outputs[0].data["text/plain"]


def test_the_continuing_notice_shows_once_for_a_restored_conversation(
    shell: InteractiveShell,
) -> None:
    ctx = extension.get_context()
    sid = ns.session_id("default")
    assert ns.continuing_notice(ctx, ns.session_id("fresh")) is None  # nothing to continue
    ctx.manager.get_or_create(sid).add_messages(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    )
    ctx.manager.evict(sid)
    notice = ns.continuing_notice(ctx, sid)
    assert notice is not None and notice.startswith(
        "continuing session 'default': 2 earlier messages, last active "
    )
    assert ns.continuing_notice(ctx, sid) is None  # once per kernel
