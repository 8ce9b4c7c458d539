"""Adapters that run the benchmark workload through each memory design users pick.

Each peer is imported lazily, so a peer whose package is missing shows up as
"unavailable" in the report instead of breaking the run. The peers' packages
are benchmark-only dependencies (``benchmarks/requirements.txt``), never
runtime dependencies of jupyter-agentmem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Observer, Peer

__all__ = ["PEERS", "SWEEPS", "Observer", "Peer", "make"]


def _naive(**kw: Any) -> Peer:
    from .simple import NaivePeer

    return NaivePeer(**kw)


def _engine(**kw: Any) -> Peer:
    from .simple import EnginePeer

    return EnginePeer(**kw)


def _article(**kw: Any) -> Peer:
    from .article import ArticlePeer

    return ArticlePeer(**kw)


def _trim(**kw: Any) -> Peer:
    from .lc import TrimPeer

    return TrimPeer(**kw)


def _summary_buffer(**kw: Any) -> Peer:
    from .lc import SummaryBufferPeer

    return SummaryBufferPeer(**kw)


def _graph(kind: str) -> Callable[..., Peer]:
    def make_graph(**kw: Any) -> Peer:
        from .graph import GraphPeer

        return GraphPeer(kind, **kw)

    return make_graph


def _sdk(kind: str, trimmer: bool = False) -> Callable[..., Peer]:
    def make_sdk(**kw: Any) -> Peer:
        from .sdk import SDKPeer

        return SDKPeer(kind, trimmer=trimmer, **kw)

    return make_sdk


#: name -> factory, in report order (ours first).
PEERS: dict[str, Callable[..., Peer]] = {
    "agentmem": _engine,
    "agentmem-sqlite": lambda **kw: _engine(sqlite=True, **kw),
    "naive": _naive,
    "article": _article,
    "lc-trim": _trim,
    "lc-summary-buffer": _summary_buffer,
    "lg-memory": _graph("memory"),
    "lg-sqlite": _graph("sqlite"),
    "lg-summarize": _graph("summarize"),
    "sdk-sqlite-mem": _sdk("memory"),
    "sdk-sqlite-file": _sdk("file"),
    "sdk-compaction": _sdk("compaction"),
    "sdk-sqlite-mem+trimmer": _sdk("memory", trimmer=True),
}

#: Settings swept by the orphan-tool check: a cut lands on a tool result only for
#: some window sizes, so each windowed peer is tried at several (its default last).
SWEEPS: dict[str, list[dict[str, Any]]] = {
    "agentmem": [
        {"max_recent": 3},
        {"max_recent": 4, "max_recent_bytes": 8192},
        {"max_recent": 6},
        {},
    ],
    "article": [{"keep_recent": 3}, {"keep_recent": 4}, {"keep_recent": 6}, {}],
    "lc-trim": [{"max_tokens": 4000}, {"max_tokens": 8000}, {"max_tokens": 16000}, {}],
    "lc-summary-buffer": [
        {"max_tokens": 2000},
        {"max_tokens": 4000},
        {"max_tokens": 8000},
        {},
    ],
    "lg-summarize": [
        {"keep_messages": 3, "trigger_tokens": 8000},
        {"keep_messages": 5, "trigger_tokens": 8000},
        {"keep_messages": 6, "trigger_tokens": 8000},
        {},
    ],
    "sdk-sqlite-mem": [{"limit": 3}, {"limit": 5}, {"limit": 7}, {"limit": 12}, {}],
    "sdk-compaction": [{}],
    "naive": [{}],
    "lg-memory": [{}],
}


def make(name: str, **kwargs: Any) -> Peer:
    """A fresh peer; raises ImportError when its package is not installed."""
    return PEERS[name](**kwargs)
