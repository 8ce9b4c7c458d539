"""The notebooks' kernels start as on a fresh machine: no API key, no endpoint, no MEM_LIMIT.

nbval starts a notebook's kernel while setting up its first cell, with the
environment of the pytest process. A developer who exported ``OPENAI_API_KEY``
would otherwise run the notebooks against OpenAI instead of the deterministic
demo model, and their saved outputs would not match. The variables are removed
only while a notebook item is set up and restored right after, so tests outside
this folder see the environment unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

FRESH_MACHINE_UNSET = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AGENTMEM_MODEL", "MEM_LIMIT")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in FRESH_MACHINE_UNSET if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
