"""Keep the README's magics and configuration references generated from the code.

``python scripts/readme_magics.py --write`` rewrites the blocks between the
``<!-- magics:... -->`` and ``<!-- config:... -->`` markers; ``--check`` (run by
the test suite) fails when the README has drifted from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- magics:start -->", "<!-- magics:end -->"
CONFIG_START, CONFIG_END = "<!-- config:start -->", "<!-- config:end -->"


def render_config() -> str:
    from jupyter_agentmem.agent.settings import AgentMem

    config = AgentMem()
    rows = ["| trait | default | meaning |", "|---|---|---|"]
    for name, help_text in config.settable().items():
        default = config.trait_defaults(name)
        rows.append(f"| `{name}` | `{default!r}` | {help_text} |")
    return "\n".join(rows)


def render() -> str:
    from jupyter_agentmem.notebook.magics import AgentMagics
    from jupyter_agentmem.notebook.memory_magics import MemoryMagics

    blocks = []
    for title, method in (
        ("%%agent", AgentMagics.agent_cell),
        ("%agent", AgentMagics.agent_line),
        ("%agent_memory", MemoryMagics.agent_memory),
    ):
        doc = (method.__doc__ or "").strip()
        doc = doc.removeprefix("::").strip("\n")
        blocks.append(f"### `{title}`\n\n```text\n{doc}\n```")
    return "\n\n".join(blocks)


def splice(text: str, block: str, start: str = START, end: str = END) -> str:
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{block}\n{end}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    for start, end in ((START, END), (CONFIG_START, CONFIG_END)):
        if start not in text or end not in text:
            print(f"{README} has no {start} ... {end} block", file=sys.stderr)
            return 1
    wanted = splice(text, render())
    wanted = splice(wanted, render_config(), CONFIG_START, CONFIG_END)
    if args.write:
        README.write_text(wanted, encoding="utf-8")
        return 0
    if wanted != text:
        print(
            "README.md magics reference is out of date: run "
            "`python scripts/readme_magics.py --write`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
