"""Test helpers users can use too: a loopback OpenAI-compatible server and record/replay.

``FakeModelServer`` speaks the real wire protocol (HTTP + server-sent events), so
the real ``openai`` SDK code path runs in tests and notebook regression tests. It
builds on the demo model's server (:mod:`jupyter_agentmem.demo`); the product
never imports this package. Stdlib only: importing this does not import openai.
"""

from __future__ import annotations

from jupyter_agentmem.demo import DemoReply, DemoToolCall, demo_reply

from .cassette import Cassette, CassetteError, Interaction, request_key
from .server import FakeModelServer

__all__ = [
    "Cassette",
    "CassetteError",
    "DemoReply",
    "DemoToolCall",
    "FakeModelServer",
    "Interaction",
    "demo_reply",
    "request_key",
]
