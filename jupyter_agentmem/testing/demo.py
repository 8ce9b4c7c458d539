"""Moved to :mod:`jupyter_agentmem.demo.reply`; kept as an alias."""

from __future__ import annotations

from jupyter_agentmem.demo.reply import (
    SUMMARY_PREFIX,
    SWITCH_HINT,
    DemoReply,
    DemoToolCall,
    content_text,
    demo_reply,
    estimate_tokens,
    prompt_chars,
)

__all__ = [
    "SUMMARY_PREFIX",
    "SWITCH_HINT",
    "DemoReply",
    "DemoToolCall",
    "content_text",
    "demo_reply",
    "estimate_tokens",
    "prompt_chars",
]
