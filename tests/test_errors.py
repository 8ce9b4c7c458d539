"""Our errors render as one line in IPython, and %tb really shows the full traceback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_cell(
        "from jupyter_agentmem.errors import StoreError\n"
        "def deep_helper_that_fails():\n"
        "    raise StoreError('the store is down: check STORE_URL')\n"
    )
    yield shell


def test_error_is_one_line_and_tb_shows_the_frames(shell: InteractiveShell) -> None:
    with capture_output() as first:
        shell.run_cell("deep_helper_that_fails()")
    shown = first.stdout.strip()
    assert shown == "StoreError: the store is down: check STORE_URL"
    with capture_output() as tb:
        shell.run_line_magic("tb", "")
    assert "deep_helper_that_fails" in tb.stdout  # the frame that raised
    assert "raise StoreError" in tb.stdout
    assert tb.stdout.rstrip().endswith("StoreError: the store is down: check STORE_URL")


def test_each_new_error_is_one_line_again(shell: InteractiveShell) -> None:
    for _ in range(2):
        with capture_output() as out:
            shell.run_cell("deep_helper_that_fails()")
        assert out.stdout.strip() == "StoreError: the store is down: check STORE_URL"
