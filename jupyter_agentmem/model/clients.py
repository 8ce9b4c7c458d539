"""Configured ``openai`` clients for any OpenAI-compatible server (OpenAI, Ollama, vLLM,
llama.cpp, the demo model): the one place that decides which key is sent."""

from __future__ import annotations

import os
from typing import Any

import openai

__all__ = ["PLACEHOLDER_KEY", "make_async_client", "make_client"]

#: Sent when a non-OpenAI ``base_url`` (Ollama, vLLM, llama.cpp, the demo model) needs no key.
PLACEHOLDER_KEY = "sk-no-key-required"


def _resolve_key(base_url: str | None, api_key: str | None) -> str | None:
    """The key to use: explicit, else ``OPENAI_API_KEY``, else a placeholder for non-OpenAI URLs.

    Local OpenAI-compatible servers ignore the key but the SDK insists on one, so a
    user pointing at Ollama should not have to invent a key; OpenAI itself keeps
    the SDK's clear "no key" error.
    """
    if api_key:
        return api_key
    if os.environ.get("OPENAI_API_KEY"):
        return None  # let the SDK read it
    if base_url and "api.openai.com" not in base_url:
        return PLACEHOLDER_KEY
    return None


def _client_options(
    base_url: str | None, api_key: str | None, timeout: float, max_retries: int
) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": _resolve_key(base_url, api_key),
        "timeout": timeout,
        "max_retries": max_retries,
    }


def make_client(
    base_url: str | None, api_key: str | None, timeout: float = 60.0, max_retries: int = 2
) -> openai.OpenAI:
    """A configured sync client; raises ``openai.OpenAIError`` when no key can be found."""
    return openai.OpenAI(**_client_options(base_url, api_key, timeout, max_retries))


def make_async_client(
    base_url: str | None, api_key: str | None, timeout: float = 60.0, max_retries: int = 2
) -> openai.AsyncOpenAI:
    """The async twin of :func:`make_client`."""
    return openai.AsyncOpenAI(**_client_options(base_url, api_key, timeout, max_retries))
