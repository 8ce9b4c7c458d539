"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_agentmem.testing import FakeModelServer


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    """One loopback model server per module (the servers under test are module-scoped too);
    script it with ``enqueue_*``. Unscripted requests get a 500, never a default answer."""
    srv = FakeModelServer(default=None).start()
    yield srv
    srv.stop()


@pytest.fixture
def srv() -> Iterator[FakeModelServer]:
    """A fresh loopback model server per test, for tests that read its request log;
    unscripted requests get a 500."""
    with FakeModelServer(default=None) as server:
        yield server
