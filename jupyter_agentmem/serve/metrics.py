"""``GET /metrics``: the app's figures in the Prometheus text format, via prometheus_client.

A collector reads the manager, monitor and run registry at scrape time (nothing
is counted twice, nothing grows), registered on a registry of its own per app,
so several apps in one process never share or clash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .deps import Served

_MANAGER_COUNTERS = {
    "evictions": "Sessions written to the store to free memory.",
    "restores": "Sessions brought back from the store.",
    "compactions": "Sessions whose old turns were folded into the summary.",
    "persist_failures": "Store writes that failed (the data stayed in memory).",
}


class ServedCollector(Collector):
    """Gauges and counters of one served app, computed when Prometheus scrapes."""

    def __init__(self, served: Served) -> None:
        self.served = served

    def collect(self) -> Iterator[Metric]:
        stats = self.served.manager.stats()
        yield _gauge("sessions_in_memory", "Live sessions.", stats.sessions_in_memory)
        if stats.sessions_persisted is not None:
            yield _gauge("sessions_persisted", "Sessions in the store.", stats.sessions_persisted)
        yield _gauge("session_bytes", "Estimated heap of live sessions.", stats.estimated_bytes)
        yield _gauge("session_bytes_limit", "The manager's byte budget.", stats.max_memory_bytes)
        for name, doc in _MANAGER_COUNTERS.items():
            yield CounterMetricFamily(f"agentmem_{name}", doc, value=getattr(stats, name))
        runs = CounterMetricFamily("agentmem_runs", "Runs by outcome.", labels=["outcome"])
        for outcome, count in self.served.runs.counts.items():
            runs.add_metric([outcome], count)
        yield runs
        yield _gauge("runs_active", "Runs running or queued.", self.served.runs.active())
        yield _gauge("streams_open", "SSE streams being served.", self.served.runs.streams_open)
        memory = self.served.monitor.check()
        yield _gauge("process_rss_bytes", "Resident memory of this process.", memory["rss_bytes"])
        yield _gauge("memory_limit_bytes", "The real memory limit.", memory["limit_bytes"])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"agentmem_{name}", doc, value=value)


def make_registry(served: Served) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServedCollector(served))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
