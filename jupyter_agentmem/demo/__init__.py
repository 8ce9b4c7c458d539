"""The offline demo model: what answers ``%%agent`` (or the server face) when no key is set.

Product code, stdlib only: :func:`demo_reply` is the model (a pure function of
the request), :class:`DemoServer` serves it as a loopback OpenAI-compatible
endpoint so the real SDK path runs. ``jupyter_agentmem.testing`` builds its
scripted test server on top of this package, never the other way round.
"""

from __future__ import annotations

from .reply import SWITCH_HINT, DemoReply, DemoToolCall, demo_reply
from .server import DemoServer

__all__ = ["SWITCH_HINT", "DemoReply", "DemoServer", "DemoToolCall", "demo_reply"]
