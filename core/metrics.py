"""A job's metrics, defined once: every emitter writes them, every dashboard and alert reads them.

`METRICS` is the one table (key, unit, kind, description, where the figure comes from). The
emitters — CloudWatch's embedded metric format (the Lambda handler), the `metrics` JSON log line
(Cloud Logging's log-based metrics, Application Insights' traces), OpenTelemetry (Application
Insights' customMetrics), Prometheus (`run --metrics-port`) — name each metric after its key;
tests check that every dashboard query and alert names a metric of this table that the code
really emits, and docs/operations.md lists them all.

What each invocation emits is cheap: the slice's own figures (SliceResult), the lag the slice
measured, the age of the oldest event left to copy (one record read), the source's recent write
rate (one backwards read of its newest records) and the job's failing streak and last success
from the slice history. `from_progress` maps the whole `core.progress.Progress` the same way,
for the views that measure it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.checkpoint import SliceRecord
from core.engine import SliceResult
from core.errors import RelayError
from core.logs import logger
from core.progress import Progress, pending_after, slices_of, source_write_rate
from core.relay import Relay
from core.shards import Shard

Unit = Literal["bytes", "events", "seconds", "events/s", "slices"]
Kind = Literal["gauge", "counter"]

NAMESPACE = "esdb-relay"  # CloudWatch namespace; the job is the JobId dimension
PREFIX = "esdb_relay_"  # Prometheus and OpenTelemetry names
METRICS_MESSAGE = "metrics"  # the message of the JSON log line that carries a sample
# After a slice that did not catch up, what lies after it is read this far (one or two reads):
# the events left when that is all of them, and the age of the oldest.
PENDING_RECORDS = 200
PENDING_BYTES = 1024 * 1024


class Metric(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str  # snake_case, e.g. lag_bytes
    unit: Unit
    kind: Kind  # gauge: the value now; counter: an amount per invocation, summed over time
    description: str

    @property
    def cloudwatch(self) -> str:
        """CloudWatch metric name: LagBytes."""
        return "".join(part.title() for part in self.key.split("_"))

    @property
    def cloudwatch_unit(self) -> str:
        return {
            "bytes": "Bytes",
            "events": "Count",
            "seconds": "Seconds",
            "events/s": "Count/Second",
            "slices": "Count",
        }[self.unit]

    @property
    def prometheus(self) -> str:
        """The exposed Prometheus/OpenMetrics sample name: esdb_relay_lag_bytes,
        esdb_relay_events_written_total (a counter's samples end in _total)."""
        return PREFIX + self.key + ("_total" if self.kind == "counter" else "")

    @property
    def otel(self) -> str:
        """The OpenTelemetry instrument name (Application Insights' customMetrics name)."""
        return PREFIX + self.key

    @property
    def ucum(self) -> str:
        """The unit as Cloud Monitoring and OpenTelemetry write it (UCUM)."""
        return {"bytes": "By", "events": "1", "seconds": "s", "events/s": "1/s", "slices": "1"}[
            self.unit
        ]


METRICS: tuple[Metric, ...] = (
    Metric(
        key="lag_bytes",
        unit="bytes",
        kind="gauge",
        description="Source log bytes not yet copied: the source head minus the committed "
        "checkpoint.",
    ),
    Metric(
        key="lag_events",
        unit="events",
        kind="gauge",
        description="Events not yet copied; estimated from the slice's bytes per event (exact "
        "0 when caught up).",
    ),
    Metric(
        key="lag_seconds",
        unit="seconds",
        kind="gauge",
        description="Age of the oldest source event not yet copied (0 when caught up): how far "
        "behind the target is in time.",
    ),
    Metric(
        key="copy_rate",
        unit="events/s",
        kind="gauge",
        description="Events read per second by the slice (0 when it found nothing to copy).",
    ),
    Metric(
        key="source_write_rate",
        unit="events/s",
        kind="gauge",
        description="Events appended to the source per second over the last few minutes.",
    ),
    Metric(
        key="slice_seconds",
        unit="seconds",
        kind="gauge",
        description="Duration of the slice.",
    ),
    Metric(
        key="events_written",
        unit="events",
        kind="counter",
        description="Events written to the target (per slice; summed over time).",
    ),
    Metric(
        key="dead_lettered",
        unit="events",
        kind="counter",
        description="Events sent to the dead-letter stream `$esdb-relay-dead-letters-<job>` "
        "instead of their own (too big for the target).",
    ),
    Metric(
        key="failed_slices",
        unit="slices",
        kind="counter",
        description="Slices that failed (1 per failed invocation).",
    ),
    Metric(
        key="consecutive_failures",
        unit="slices",
        kind="gauge",
        description="Failed slices in a row, up to the newest (0 after a success).",
    ),
    Metric(
        key="last_success_age",
        unit="seconds",
        kind="gauge",
        description="Seconds since the newest successful slice finished.",
    ),
)

BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}


class Sample(BaseModel):
    """One invocation's (or one measurement's) figures; only the ones known are present."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    values: dict[str, float]
    shard: int | None = Field(
        default=None,
        description="a sharded job's shard whose slice this is; the metrics stay the job's "
        "(`job_id`, the parent job): see SHARDS",
    )

    def model_post_init(self, _context: Any) -> None:
        unknown = set(self.values) - set(BY_KEY)
        if unknown:
            raise ValueError(f"not metrics of core/metrics.py: {sorted(unknown)}")


Sink = Callable[[Sample], None]

SHARDS = (
    "A sharded job's shards emit under the job's own id, so every alarm, dashboard and query "
    "keyed on the job reads the job as one: gauges such as lag, failures in a row and the age "
    "of the last success are each shard's own, so their Maximum is the worst shard's; counters "
    "sum over the shards. The shard is not a CloudWatch dimension (each dimension value is "
    "another billed custom metric, K times each metric) nor a Cloud Logging metric label: "
    "on AWS it is the `Shard` property of the EMF line and on GCP the `shard` field of the "
    "JSON line (both searchable in the logs); on Azure it is `customDimensions.shard` of "
    "customMetrics (a dimension costs no more there)."
)


# ------------------------------------------------------------------------------ the figures


def from_slice(
    result: SliceResult,
    *,
    history: Sequence[SliceRecord] = (),
    lag_seconds: float | None = None,
    source_write_rate: float | None = None,
    now: datetime | None = None,
) -> Sample:
    """A slice's figures. `history` is the job's slice history (newest first, this slice's
    record included when it was recorded): the failing streak and the last success come from
    it."""
    now = now or datetime.now(UTC)
    values: dict[str, float | None] = {
        "lag_bytes": result.lag_bytes,
        "lag_events": _lag_events(result),
        "lag_seconds": 0.0 if result.caught_up else lag_seconds,
        # 0 when the slice found nothing to copy (following the tail)
        "copy_rate": result.events_read / result.seconds if result.seconds > 0 else None,
        "source_write_rate": source_write_rate,
        "slice_seconds": result.seconds,
        "events_written": result.events_written,
        "dead_lettered": result.events_dead_lettered,
        "failed_slices": 1 if result.status == "failed" else 0,
    }
    values |= _streak(history, now, failed_now=result.status == "failed")
    return Sample(job_id=result.job_id, at=now, values=_known(values))


def from_failure(
    job_id: str, *, history: Sequence[SliceRecord] = (), now: datetime | None = None
) -> Sample:
    """A slice that raised (or an invocation that could not run one)."""
    now = now or datetime.now(UTC)
    values: dict[str, float | None] = {"failed_slices": 1}
    values |= _streak(history, now, failed_now=True)
    return Sample(job_id=job_id, at=now, values=_known(values))


def from_progress(progress: Progress) -> Sample:
    """The whole measured progress of a job (`core.progress.measure`)."""
    values: dict[str, float | None] = {
        "lag_bytes": progress.lag_bytes,
        "lag_events": progress.lag_events,
        "lag_seconds": progress.lag_seconds,
        "copy_rate": progress.copy_rate,
        "source_write_rate": progress.source_write_rate,
        "slice_seconds": progress.last_slice_seconds,
        "consecutive_failures": progress.consecutive_failures,
        "last_success_age": progress.last_success_age_seconds,
    }
    return Sample(job_id=progress.job_id, at=progress.checked_at, values=_known(values))


def _lag_events(result: SliceResult) -> float | None:
    if result.lag_bytes == 0 or result.caught_up:
        return 0.0
    span = (result.position or 0) - (result.from_position or 0)
    if result.lag_bytes is None or span <= 0 or not result.events_read:
        return None
    return float(round(result.lag_bytes * result.events_read / span))


def _streak(
    history: Sequence[SliceRecord], now: datetime, *, failed_now: bool
) -> dict[str, float | None]:
    """Failures in a row and the last success's age, from the history (newest first)."""
    failing = 0
    last_ok: datetime | None = None
    for record in slices_of(list(history)):  # not the records of relays that stopped
        if record.error:
            if last_ok is None:
                failing += 1
            continue
        last_ok = record.finished_at
        break
    if failed_now and failing == 0:
        failing = 1  # the failed slice was not recorded (it failed before taking the lease)
    age = max(0.0, (now - last_ok).total_seconds()) if last_ok else None
    return {"consecutive_failures": failing, "last_success_age": age}


def _known(values: dict[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None}


# ------------------------------------------------------------------------------ the emitters


def emf(sample: Sample) -> dict[str, Any]:
    """The sample as one CloudWatch embedded-metric-format document: printed as a line of the
    function's log, CloudWatch turns it into metrics in namespace esdb-relay, dimension JobId."""
    metrics = [BY_KEY[k] for k in sample.values]
    return {
        "_aws": {
            "Timestamp": int(sample.at.timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["JobId"]],
                    "Metrics": [{"Name": m.cloudwatch, "Unit": m.cloudwatch_unit} for m in metrics],
                }
            ],
        },
        "JobId": sample.job_id,
        **({} if sample.shard is None else {"Shard": sample.shard}),  # a property, not a dimension
        **{m.cloudwatch: sample.values[m.key] for m in metrics},
    }


def print_emf(sample: Sample) -> None:
    """Lambda sends a function's stdout to CloudWatch Logs, where EMF lines become metrics."""
    print(json.dumps(emf(sample)), flush=True)


def log_sample(sample: Sample) -> None:
    """The sample as one JSON log line: {"message": "metrics", "job_id": ..., "metrics":
    {"lag_bytes": ..., ...}} — what Cloud Logging's log-based metrics extract."""
    shard = {} if sample.shard is None else {"shard": sample.shard}
    logger.info(
        METRICS_MESSAGE,
        extra={"job_id": sample.job_id, **shard, "metrics": dict(sample.values)},
    )


def emit(sink: Sink | None, build: Callable[[], Sample | None]) -> None:
    """Build a sample and send it; a failure of either is a warning: metrics never fail a
    slice."""
    if sink is None:
        return
    try:
        sample = build()
        if sample is not None:
            sink(sample)
    except Exception as e:
        logger.log(logging.WARNING, "metrics not emitted: %s", e)


# ------------------------------------------------------------------------------ one invocation


def measure_slice(
    relay: Relay,
    result: SliceResult,
    *,
    source_reads: bool = True,
    shard: Shard | None = None,
) -> Sample | None:
    """What an invocation emits after its slice (None for a busy slice: another invocation
    holds the job). Reads the job's history and, with `source_reads`, what lies after the
    slice's position (at most PENDING_RECORDS records: the events left and the oldest one's
    age) and the source's newest records (its write rate); a figure that cannot be read is left
    out. A shard's slice (`shard`) reads its own history and counts its own streams' events,
    and is emitted under the job's id (SHARDS)."""
    if result.status == "busy":
        return None
    history = _history(relay, result.job_id)
    lag_seconds = lag_events = rate = None
    now = datetime.now(UTC)
    matches = re.compile(shard.regex).search if shard is not None else None
    if source_reads and not result.caught_up and result.status == "ok":
        pending = _quietly(
            lambda: pending_after(
                relay.job,
                relay.source,
                result.position,
                limit=PENDING_RECORDS,
                max_bytes=PENDING_BYTES,
                matches=matches,
            )
        )
        if pending is not None:
            if pending.oldest_created is not None:
                lag_seconds = max(0.0, (now - pending.oldest_created).total_seconds())
            elif pending.exact:
                lag_seconds = 0.0  # nothing the job copies is left
            if pending.exact:
                lag_events = pending.counted
    if source_reads:
        rate = _quietly(lambda: source_write_rate(relay.source, now))
    sample = from_slice(
        result, history=history, lag_seconds=lag_seconds, source_write_rate=rate, now=now
    )
    if shard is not None:
        sample = sample.model_copy(update={"job_id": shard.job_id, "shard": shard.index})
    if lag_events is None:
        return sample
    return sample.model_copy(update={"values": {**sample.values, "lag_events": float(lag_events)}})


def measure_failure(relay: Relay | None, job_id: str, shard: Shard | None = None) -> Sample:
    """What an invocation emits when its slice failed: the failure, the streak, and the lag
    when the source and the store can still be read (a failing target must not hide it). A
    shard's: its own streak and lag, under the job's id."""
    key = shard.key if shard is not None else job_id
    at = {} if shard is None else {"shard": shard.index}
    job_id = shard.job_id if shard is not None else job_id  # a backfill range's shard: the range
    if relay is None:
        return from_failure(job_id).model_copy(update=at)
    sample = from_failure(job_id, history=_history(relay, key)).model_copy(update=at)
    lag = _quietly(lambda: _lag_bytes(relay, key))
    if lag is None:
        return sample
    return sample.model_copy(update={"values": {**sample.values, "lag_bytes": float(lag)}})


def _lag_bytes(relay: Relay, job_id: str) -> int:
    checkpoint = relay.store.load(job_id)
    position = checkpoint.position.commit if checkpoint and checkpoint.position else 0
    return max(0, relay.source.head_position() - position)


def _history(relay: Relay, job_id: str) -> list[SliceRecord]:
    return _quietly(lambda: relay.store.history(job_id, limit=50)) or []


def _quietly(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except RelayError:
        return None
