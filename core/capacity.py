"""How long a copy takes and what it costs, per cloud: the capacity model (issue 18, point 4).

Inputs, each with its basis (nothing here is measured against the user's servers):

- the per-process rate of the job's mode and write path, and its CPU seconds per million
  events, as the benchmark measured them (`core/capacity_figures.json`, written by `make
  bench`), capped on each cloud by the function's CPU share (core/capacity_prices.py);
- the target's write capacity, events/s it accepts from all writers (given, or a default for
  an Event Store Cloud size where the seed doc states one; unknown otherwise);
- the source's scan capacity, records/s of `$all` it serves to all readers (given, or
  unknown). With K shards each shard reads the whole of `$all` through a server-side filter,
  so the source scans the log K times.

A copy of N events in K chains (shards) takes the longest of three times:

    N / (K * per-chain rate)      the per-process rate (its invocations' start-up included)
    N / target write capacity     the target
    K * R / source scan capacity  the source, scanning its R records once per shard

and that one names the bound. K is the least that finishes within the target duration, or,
when none does, the one that finishes soonest (the least of those). Global order is kept
only with K = 1: shards copy side by side, each in order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.capacity_prices import (
    CLOUDS,
    Cloud,
    Usage,
    bill,
    fixed_per_hour,
    slice_seconds,
)

FIGURES_PATH = Path(__file__).with_name("capacity_figures.json")
DEFAULT_TARGET_HOURS = 24.0
DEFAULT_MAX_SHARDS = 64
STORE_SIZES = (100_000_000, 1_000_000_000, 10_000_000_000)

WritePath = Literal["append-records", "multi-append", "per-stream"]
Bound = Literal["per-process rate", "target write capacity", "source scan"]

WRITE_PATHS: dict[WritePath, str] = {
    "append-records": "AppendRecords (KurrentDB 26.1)",
    "multi-append": "multi-stream append (KurrentDB 25.1)",
    "per-stream": "one append per same-stream run (older targets, or multi_append = false)",
}

# Event Store Cloud sizes whose write capacity the seed doc (../shared/seeds) states.
TARGET_SIZES: dict[str, tuple[float, str]] = {
    "C4": (
        1_000.0,
        "the Event Store Cloud docs: six writers on a C4-sized instance give 'over 1000 "
        "events per second' (one event per append; a lower bound, not the cluster's limit)",
    ),
}

ORDER_CAVEAT = (
    "global order is not kept across shards: each shard copies its own streams in their "
    "$all order, side by side with the others; only K = 1 keeps the source's global order"
)


class ModeFigure(BaseModel):
    """One mode's measured per-process figures."""

    model_config = ConfigDict(frozen=True)

    label: str  # as the benchmark names it
    mode: Literal["ordered", "partitioned"]
    partitions: int = 1
    write_path: WritePath
    events_per_second: float = Field(gt=0)
    cpu_seconds_per_million: float = Field(ge=0)  # the relay's, after its start-up

    @property
    def description(self) -> str:
        mode = self.mode if self.mode == "ordered" else f"partitioned {self.partitions}"
        return f"{mode}, {WRITE_PATHS[self.write_path]}"


class Figures(BaseModel):
    """The benchmark's figures the model uses, and where they come from."""

    measured_at: str
    latency_ms: float  # emulated per call to the target
    workload: str
    machine: str
    commit: str
    modes: list[ModeFigure] = Field(min_length=1)

    @property
    def basis(self) -> str:
        return (
            f"measured by bench/replication_bench.py on {self.measured_at} (commit "
            f"{self.commit}; {self.workload}; {self.latency_ms:g} ms per call to the target; "
            f"{self.machine})"
        )

    def pick(
        self, mode: Literal["ordered", "partitioned"], partitions: int, path: WritePath
    ) -> tuple[ModeFigure, str | None]:
        """The figure for a job's mode and the target's write path; a note when the nearest
        measured one stands in for it."""
        same = [m for m in self.modes if m.mode == mode]
        if not same:
            raise ValueError(f"the figures have no {mode} mode measured: re-run `make bench`")
        exact = [m for m in same if m.write_path == path]
        pool = exact or same
        best = min(pool, key=lambda m: (abs(math.log(m.partitions / partitions)), m.partitions))
        notes = []
        if best.write_path != path:
            notes.append(
                f"{WRITE_PATHS[path]} is not measured for {mode} mode: the figure of "
                f"{WRITE_PATHS[best.write_path]} stands in, so the rate may be lower"
            )
        if mode == "partitioned" and best.partitions != partitions:
            notes.append(
                f"partitions = {partitions} is not measured; the nearest, {best.partitions}, "
                "stands in"
            )
        return best, "; ".join(notes) or None


def load_figures(path: Path = FIGURES_PATH) -> Figures:
    """The figures `make bench` recorded (ValueError naming the file when unreadable)."""
    try:
        return Figures.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the benchmark's figures in {path}: {e}") from None


class Capacity(BaseModel):
    """A server's capacity, events (or records) per second, with where the figure comes from;
    None when unknown: then it bounds nothing, and the answer says what it would need."""

    events_per_second: float | None = Field(default=None, gt=0)
    basis: str


def target_capacity(rate: float | None = None, size: str | None = None) -> Capacity:
    """The target's write capacity: the user's figure, or the seed doc's for a cluster size."""
    if rate is not None:
        return Capacity(events_per_second=rate, basis="given (--target-write-rate)")
    if size is not None:
        known = TARGET_SIZES.get(size.upper())
        if known is None:
            raise ValueError(
                f"no write capacity is documented for size {size!r} (known: "
                f"{', '.join(TARGET_SIZES)}): give the events/s it accepts with "
                "--target-write-rate"
            )
        return Capacity(events_per_second=known[0], basis=known[1])
    return Capacity(basis="not given: assumed to keep up (--target-write-rate to bound it)")


def source_capacity(rate: float | None = None) -> Capacity:
    if rate is not None:
        return Capacity(events_per_second=rate, basis="given (--source-scan-rate)")
    return Capacity(basis="not given: assumed to keep up (--source-scan-rate to bound it)")


class Question(BaseModel):
    """What the model is asked: a store, a mode's figures, the servers' capacities."""

    events: int = Field(gt=0)  # events the job copies
    records: int | None = Field(default=None, gt=0)  # records of `$all` a scan reads (≥ events)
    figure: ModeFigure
    target_hours: float = Field(default=DEFAULT_TARGET_HOURS, gt=0)
    target_write: Capacity = Field(default_factory=target_capacity)
    source_scan: Capacity = Field(default_factory=source_capacity)
    max_shards: int = Field(default=DEFAULT_MAX_SHARDS, ge=1)

    @property
    def scanned(self) -> int:
        return max(self.records or self.events, self.events)


class Projection(BaseModel):
    """A copy's duration and price on one cloud with K chains (shards)."""

    cloud: str  # Cloud.key
    cloud_name: str
    shards: int
    hours: float
    events_per_second: float  # of the whole copy: what the target must accept at this pace
    chain_rate: float  # events/s one chain keeps up when nothing else bounds it
    bound: Bound
    within_target: bool
    source_scan_needed: float  # records/s the source scans at this pace (K times its log)
    usage: Usage
    usd_compute: float
    usd_fixed: float  # the deployment's fixed costs over the copy's hours (peered)
    usd: float
    notes: list[str]


def _times(q: Question, cloud: Cloud, k: int) -> dict[Bound, float]:
    """Seconds each bound needs with k chains."""
    rate = cloud.process_rate(q.figure.events_per_second, q.figure.cpu_seconds_per_million)
    times: dict[Bound, float] = {"per-process rate": q.events * slice_seconds(cloud, rate) / k}
    if q.target_write.events_per_second:
        times["target write capacity"] = q.events / q.target_write.events_per_second
    if q.source_scan.events_per_second:
        times["source scan"] = k * q.scanned / q.source_scan.events_per_second
    return times


def project(q: Question, cloud: Cloud, shards: int) -> Projection:
    """The copy with `shards` chains on `cloud`."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    times = _times(q, cloud, shards)
    bound = max(times, key=lambda b: times[b])  # the first of equals: dict order
    seconds = times[bound]
    hours = seconds / 3600
    chain_rate = cloud.process_rate(q.figure.events_per_second, q.figure.cpu_seconds_per_million)
    # Slices follow from a chain's pace: its own rate, or the slower one a bound elsewhere
    # sets (N/K events in `seconds`), when a slice may end at the function's time-out.
    paced = chain_rate if bound == "per-process rate" else q.events / shards / seconds
    invocations = q.events / cloud.events_per_slice(paced)
    usage = bill(cloud, invocations, shards * seconds)
    fixed = fixed_per_hour(cloud) * hours
    notes = []
    if shards > 1 and q.figure.mode == "ordered":
        notes.append(ORDER_CAVEAT)
    if q.target_write.events_per_second is None:
        notes.append(
            f"the target must accept {q.events / seconds:,.0f} events/s (its write capacity "
            "is not given: --target-write-rate)"
        )
    if shards > 1 and q.source_scan.events_per_second is None:
        notes.append(
            f"the source scans $all {shards} times (each shard reads it through a "
            f"server-side filter): {shards * q.scanned / seconds:,.0f} records/s; its scan "
            "capacity is not given (--source-scan-rate), so this is not checked"
        )
    return Projection(
        cloud=cloud.key,
        cloud_name=cloud.name,
        shards=shards,
        hours=hours,
        events_per_second=q.events / seconds,
        chain_rate=chain_rate,
        bound=bound,
        within_target=hours <= q.target_hours,
        source_scan_needed=shards * q.scanned / seconds,
        usage=usage,
        usd_compute=usage.usd,
        usd_fixed=fixed,
        usd=usage.usd + fixed,
        notes=notes,
    )


def shard_cap(q: Question, cloud: Cloud) -> int:
    return max(1, min(q.max_shards, cloud.max_parallel))


def choose(q: Question, cloud: Cloud) -> Projection:
    """The least K that copies within the target duration; when none up to the caps does,
    the K that finishes soonest (the least of equals), with a note saying why."""
    cap = shard_cap(q, cloud)
    best: Projection | None = None
    for k in range(1, cap + 1):
        p = project(q, cloud, k)
        if p.within_target:
            return p
        if best is None or p.hours < best.hours:
            best = p
    assert best is not None
    limits = {
        "per-process rate": f"more chains than the cap of {cap} ("
        + (
            f"max shards {q.max_shards}"
            if q.max_shards <= cloud.max_parallel
            else cloud.max_parallel_basis
        )
        + ")",
        "target write capacity": "a target that accepts more events/s",
        "source scan": "a source that scans $all faster (each shard scans all of it once)",
    }
    best.notes.insert(
        0,
        f"cannot finish within {q.target_hours:g} h: at best {best.hours:,.1f} h with K = "
        f"{best.shards}, bound by the {best.bound}; it would take {limits[best.bound]}",
    )
    return best


class CloudAnswer(BaseModel):
    """One cloud's answer: the job as one chain, and sharded."""

    cloud: str
    one_chain: Projection
    sharded: Projection


def answer(q: Question, clouds: tuple[Cloud, ...] = CLOUDS) -> list[CloudAnswer]:
    return [
        CloudAnswer(cloud=c.key, one_chain=project(q, c, 1), sharded=choose(q, c)) for c in clouds
    ]
