"""The job's metrics (core/metrics.py) for Prometheus: `esdb-relay run --metrics-port N`.

prometheus-client serves them over HTTP, in the Prometheus text format or OpenMetrics when the
scraper asks for it (`Accept: application/openmetrics-text`). Gauges hold the newest sample's
value; counters add each slice's amount; `esdb_relay_last_success_age` is computed when scraped,
so it grows while no slice succeeds. Every series has the label `job_id`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.engine import SliceResult
from core.errors import ConfigError, RelayError
from core.logs import logger
from core.metrics import METRICS, Sample, emit, measure_failure, measure_slice
from core.relay import Relay
from core.shards import Shard

LIVE = "last_success_age"  # computed at scrape time from when the last success was


class MetricsPortError(ConfigError):
    """The metrics port cannot be listened on."""


class _LastSuccessAge(Collector):
    def __init__(self) -> None:
        self.last_success: dict[str, datetime] = {}
        self.lock = threading.Lock()
        metric = next(m for m in METRICS if m.key == LIVE)
        self.name, self.description = metric.otel, metric.description

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.description, labels=["job_id"])
        now = datetime.now(UTC)
        with self.lock:
            for job_id, at in self.last_success.items():
                family.add_metric([job_id], max(0.0, (now - at).total_seconds()))
        yield family


class PrometheusMetrics:
    """A registry holding every metric of the table, fed with samples."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.gauges: dict[str, Gauge] = {}
        self.counters: dict[str, Counter] = {}
        for metric in METRICS:
            if metric.key == LIVE:
                continue
            if metric.kind == "counter":
                self.counters[metric.key] = Counter(
                    metric.otel, metric.description, ["job_id"], registry=self.registry
                )
            else:
                self.gauges[metric.key] = Gauge(
                    metric.otel, metric.description, ["job_id"], registry=self.registry
                )
        self.age = _LastSuccessAge()
        self.registry.register(self.age)
        self.server: Any = None

    def observe(self, sample: Sample) -> None:
        for key, value in sample.values.items():
            if key == LIVE:
                with self.age.lock:
                    self.age.last_success[sample.job_id] = sample.at - timedelta(seconds=value)
            elif key in self.counters:
                self.counters[key].labels(sample.job_id).inc(value)
            else:
                self.gauges[key].labels(sample.job_id).set(value)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port in a daemon thread; the port it listens on (0 picks a
        free one)."""
        self.server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self.server.server_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class SliceFeed:
    """What `run` tells the registry after each slice: the slice's figures, with the source
    read for the lag in seconds and its write rate at most every `source_every` seconds (a
    relay following the tail runs a slice a second)."""

    def __init__(self, metrics: PrometheusMetrics, relay: Relay, source_every: float = 15.0):
        self.metrics, self.relay, self.source_every = metrics, relay, source_every
        self.shard: Shard | None = None  # `run --shard I`: the job's metrics, of this shard
        self._source_read_at: float | None = None
        self._last: dict[str, float] = {}

    def slice(self, result: SliceResult) -> None:
        now = time.monotonic()
        reads = self._source_read_at is None or now - self._source_read_at >= self.source_every
        if reads:
            self._source_read_at = now

        def build() -> Sample | None:
            sample = measure_slice(self.relay, result, source_reads=reads, shard=self.shard)
            if sample is None or reads:
                return sample
            # between source reads, the previous write rate and, while behind, lag in seconds
            kept = {
                k: v
                for k, v in self._last.items()
                if k == "source_write_rate" or (k == "lag_seconds" and not result.caught_up)
            }
            return sample.model_copy(update={"values": {**kept, **sample.values}})

        emit(self._observe, build)

    def failure(self, error: RelayError) -> None:
        job_id = self.relay.job.job_id
        emit(self._observe, lambda: measure_failure(self.relay, job_id, self.shard))

    def _observe(self, sample: Sample) -> None:
        self._last.update(sample.values)
        self.metrics.observe(sample)


@contextmanager
def serve_metrics(relay: Relay, port: int | None, host: str) -> Iterator[SliceFeed | None]:
    """The metrics endpoint for one `run` (nothing when no port is given)."""
    if port is None:
        yield None
        return
    metrics = PrometheusMetrics()
    try:
        bound = metrics.serve(port, host)
    except OSError as e:
        raise MetricsPortError(
            f"cannot serve metrics on {host}:{port}: {e.strerror or e}; choose a free "
            "--metrics-port (or stop what listens there)"
        ) from None
    logger.info("metrics at http://%s:%d/metrics", host, bound, extra={"metrics_port": bound})
    try:
        yield SliceFeed(metrics, relay)
    finally:
        metrics.close()
