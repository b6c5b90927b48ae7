"""The worker's Prometheus metrics, served over HTTP at /metrics.

Counters the read path bumps live here; figures the block store already keeps
(tier use, evictions, corrupt blocks) are read from it at scrape time, so there is
one source of truth for each number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

SOURCES = ("memory", "disk", "peer", "origin")


class _StoreCollector(Collector):
    def __init__(self, store: Any) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        used = GaugeMetricFamily(
            "reservoir_worker_tier_used_bytes", "Bytes cached", labels=["tier"]
        )
        capacity = GaugeMetricFamily(
            "reservoir_worker_tier_capacity_bytes", "Tier quota", labels=["tier"]
        )
        for tier in self._store.stats():
            used.add_metric([tier.name], tier.used)
            capacity.add_metric([tier.name], tier.capacity)
        yield used
        yield capacity
        counters = self._store.counters
        evictions = CounterMetricFamily(
            "reservoir_worker_evictions", "Blocks evicted", labels=["tier"]
        )
        for tier, count in counters.evictions.items():
            evictions.add_metric([tier], count)
        yield evictions
        yield CounterMetricFamily(
            "reservoir_worker_corrupt_blocks",
            "Blocks dropped because their checksum failed",
            value=counters.corrupt_blocks,
        )
        yield CounterMetricFamily(
            "reservoir_worker_disk_write_errors",
            "Block writes the disk refused (full, or failing)",
            value=counters.disk_write_errors,
        )


class WorkerMetrics:
    def __init__(self, store: Any, fills_in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.bytes_served = Counter(
            "reservoir_worker_bytes_served",
            "Bytes sent to readers, by where the block came from",
            ["source"],
            registry=self.registry,
        )
        self.hits = Counter(
            "reservoir_worker_hits", "Reads served from the cache", registry=self.registry
        )
        self.misses = Counter(
            "reservoir_worker_misses", "Reads that needed a fill", registry=self.registry
        )
        self.origin_bytes = Counter(
            "reservoir_worker_origin_bytes",
            "Bytes read from the under-storage",
            ["dataset"],
            registry=self.registry,
        )
        self.peer_bytes = Counter(
            "reservoir_worker_peer_bytes", "Bytes fetched from peer workers", registry=self.registry
        )
        fills = Gauge(
            "reservoir_worker_fills_in_flight", "Blocks being filled", registry=self.registry
        )
        fills.set_function(fills_in_flight)
        self.registry.register(_StoreCollector(store))
        for source in SOURCES:
            self.bytes_served.labels(source)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
