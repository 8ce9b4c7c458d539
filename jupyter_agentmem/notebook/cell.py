"""One ``%%agent`` turn in a notebook cell: the Agent's events through a CellRenderer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_agentmem.agent.chat import DEMO_NOTICE, ModelError

from .namespace import label
from .render import AgentAnswer, CellRenderer, code_blocks

NO_CODE = "-f code: the answer has no code block (```), so no cell was inserted"

if TYPE_CHECKING:
    from jupyter_agentmem.agent.chat import Agent
    from jupyter_agentmem.agent.response import Response
    from jupyter_agentmem.agent.settings import Endpoint

    from .context import KernelContext


def run_agent_cell(
    context: KernelContext,
    prompt: str,
    *,
    session: str = "default",
    model: str | None = None,
    system: str | None = None,
    tools: Iterable[str] | bool | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    namespace: Mapping[str, Any] | None = None,
    live: bool = True,
    output_format: str = "markdown",
) -> AgentAnswer:
    """Stream one turn into the current cell and return the answer.

    Ctrl-C keeps the partial answer visible (and stored, marked as interrupted)
    and re-raises, so "Run all" stops as the user asked. A model error shows the
    partial output, leaves the session unchanged and raises :class:`ModelError`,
    whose traceback is one line.
    """
    agent = context.agent
    config = context.config
    response = agent.chat(
        prompt,
        session,
        model=model,
        system=system,
        tools=tools,
        temperature=temperature,
        max_tokens=max_tokens,
        namespace=namespace,
    )
    endpoint = agent.endpoint(model)
    _demo_notice_once(agent, endpoint)
    # A terminal IPython cannot update a display in place: show the answer once.
    in_kernel = getattr(context.shell, "kernel", None) is not None
    renderer = CellRenderer(
        f"{endpoint.model} · session {label(session)}",
        live=live and in_kernel,
        interval=config.render_interval,
        bytes_per_second=config.render_bytes_per_second,
    )
    _stream(response, renderer)
    footer = renderer.finish(response)
    if not in_kernel:  # a terminal shows text only: the footer line, then Out[n]
        from IPython.display import display

        display({"text/plain": footer}, raw=True)
    render_as = "text" if output_format == "text" else "markdown"
    return AgentAnswer("".join(response._chunks), render_as, footer if in_kernel else "")


def insert_code(shell: Any, answer: str) -> None:
    """``-f code``: put the answer's fenced code in a new cell below; an answer without a
    code block inserts nothing and says so in one line."""
    from IPython.display import display

    code = code_blocks(answer)
    if not code:
        display({"text/plain": NO_CODE}, raw=True)
    elif shell is not None:
        shell.set_next_input(code, replace=False)


def _demo_notice_once(agent: Agent, endpoint: Endpoint) -> None:
    """Say once per agent that the offline demo model answers (no key, no model set)."""
    if endpoint.is_demo and endpoint.defaulted and not agent.demo_notice_shown:
        from IPython.display import Markdown, display

        agent.demo_notice_shown = True
        display(Markdown(f"ℹ️ {DEMO_NOTICE}"))


def _stream(response: Response, renderer: CellRenderer) -> None:
    """Feed the turn's events to the cell; on Ctrl-C or a model error keep what was shown."""
    events = response.events()
    try:
        for event in events:
            renderer.feed(event)
    except KeyboardInterrupt:
        events.close()  # commits the partial turn if the interrupt hit outside the stream
        renderer.stopped(response, "interrupted")
        raise
    except ModelError:
        if renderer.text or renderer.tool_count:
            renderer.stopped(response, "✗ failed, nothing stored")
        raise
