"""pytest fixtures for testing code (and notebooks) that talk to an OpenAI-compatible model.

Enable with ``pytest_plugins = ["jupyter_agentmem.testing.pytest_plugin"]`` in a
root ``conftest.py`` (or automatically, through the ``pytest11`` entry point).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the server is imported when the fixture is used, not at every pytest start
    from .server import FakeModelServer

__all__ = ["fake_model"]


@pytest.fixture
def fake_model() -> Iterator[FakeModelServer]:
    """A started :class:`FakeModelServer` with no default responder, stopped afterwards.

    Script it with ``fake_model.enqueue_text(...)`` etc.; point the code under test at
    ``fake_model.base_url``. An unscripted request gets a 500 "no scripted reply
    queued", so a test never passes by accident on a default answer.
    """
    from .server import FakeModelServer

    server = FakeModelServer(default=None).start()
    try:
        yield server
    finally:
        server.stop()
