"""Each slice's figures (core/metrics.py) as Application Insights custom metrics.

The function app's `APPLICATIONINSIGHTS_CONNECTION_STRING` (set by infra/azure/function.tf)
names the resource; Azure Monitor's OpenTelemetry exporter sends the metrics there, signed in
with the managed identity that `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` names (the resource
accepts Entra ID only). They land in the `customMetrics` table, named `esdb_relay_<key>` with
the job in `customDimensions.job_id` (a sharded job's shard in `customDimensions.shard`):
infra/azure/monitoring.tf's workbook and alerts read them.
Each sample is flushed at once: an instance may be frozen as soon as its invocation returns.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from core.metrics import BY_KEY, METRICS, Sample, log_sample

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
FLUSH_MILLIS = 10_000


class AppInsightsMetrics:
    """One meter provider for this worker process, exporting to Application Insights."""

    def __init__(self, connection_string: str) -> None:
        from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource

        exporter = AzureMonitorMetricExporter(
            connection_string=connection_string, disable_offline_storage=True
        )
        # Exported on each flush; the period is only a backstop.
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        self.provider = MeterProvider(
            metric_readers=[reader], resource=Resource.create({"service.name": "esdb-relay"})
        )
        meter = self.provider.get_meter("esdb_relay")
        self.instruments: dict[str, Any] = {
            m.key: (
                meter.create_counter(m.otel, unit=m.ucum, description=m.description)
                if m.kind == "counter"
                else meter.create_gauge(m.otel, unit=m.ucum, description=m.description)
            )
            for m in METRICS
        }

    def __call__(self, sample: Sample) -> None:
        attributes: dict[str, str | int] = {"job_id": sample.job_id}
        if sample.shard is not None:
            attributes["shard"] = sample.shard  # customDimensions.shard (core/metrics.SHARDS)
        for key, value in sample.values.items():
            if BY_KEY[key].kind == "counter":
                self.instruments[key].add(value, attributes)
            else:
                self.instruments[key].set(value, attributes)
        if not self.provider.force_flush(FLUSH_MILLIS):
            raise TimeoutError(f"Application Insights took no metrics in {FLUSH_MILLIS} ms")


_metrics: AppInsightsMetrics | None = None
_lock = threading.Lock()


def emit(sample: Sample) -> None:
    """The metrics sink of the Azure handler: the JSON line always (the traces the log alerts
    read), the custom metrics when the app has an Application Insights connection string."""
    global _metrics
    log_sample(sample)
    connection_string = os.environ.get(CONNECTION_STRING)
    if not connection_string:
        return
    with _lock:
        if _metrics is None:
            _metrics = AppInsightsMetrics(connection_string)
    _metrics(sample)
