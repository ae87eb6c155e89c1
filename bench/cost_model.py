"""docs/cost-model.md from the rates one benchmark run measured (5 ms emulated latency).

Per million events, for each cloud's deployment as infra/ defines it: invocations (one slice
per invocation, chained), GB-seconds, checkpoint-store operations, and their list price; and
how long a 100M / 1B event backfill takes at each measured rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from bench.strategies import Strategy
from core import capacity
from core.capacity_prices import (
    CLOUDS,
    FIXED,
    HOURS_PER_MONTH,
    PRICES_AS_OF,
    SLICE_EVENTS,
    START_SECONDS,
    STORE_READS_PER_SLICE,
    STORE_WRITES_PER_SLICE,
    Cloud,
    Fixed,
    bill,
    slice_seconds,
)

__all__ = [
    "CLOUDS",
    "FIXED",
    "SLICE_EVENTS",
    "STORE_WRITES_PER_SLICE",
    "Cloud",
    "Fixed",
    "Measured",
    "fixed_section",
    "per_million",
    "render",
]


@dataclass(frozen=True)
class Measured:
    strategy: str
    rate: float  # events/s at 5 ms on the benchmark machine
    cpu_per_million: float  # CPU seconds per million events of the replicator, after start-up
    relay: bool  # our relay (slices, checkpoint store) rather than a baseline
    mode: Literal["ordered", "partitioned"] = "ordered"
    partitions: int = 1
    write_path: capacity.WritePath = "per-stream"

    def figure(self) -> capacity.ModeFigure:
        return capacity.ModeFigure(
            label=self.strategy,
            mode=self.mode,
            partitions=self.partitions,
            write_path=self.write_path,
            events_per_second=round(self.rate, 1),
            cpu_seconds_per_million=round(self.cpu_per_million, 1),
        )


def measured_of(strategy: Strategy, rate: float, cpu_per_million: float) -> Measured:
    """A benchmark row as the cost model takes it: the write path its target offered."""
    path: capacity.WritePath = "per-stream"
    if strategy.target_version == "26.1" and strategy.mode == "ordered":
        path = "append-records"
    elif strategy.multi_append:
        path = "multi-append"
    return Measured(
        strategy.name,
        rate,
        cpu_per_million,
        strategy.kind == "relay",
        strategy.mode,
        strategy.partitions,
        path,
    )


def cloud_rate(m: Measured, cloud: Cloud) -> float:
    """The measured rate, capped by the function's CPU share (core/capacity_prices.py)."""
    return cloud.process_rate(m.rate, m.cpu_per_million)


def per_million(m: Measured, cloud: Cloud) -> dict[str, float]:
    rate = cloud_rate(m, cloud)
    if m.relay:
        invocations = 1e6 / cloud.events_per_slice(rate)
        seconds = 1e6 * slice_seconds(cloud, rate)
    else:  # a baseline is a long-lived service: compute only
        invocations, seconds = 0.0, 1e6 / rate
    used = bill(cloud, invocations, seconds)
    return {
        "rate": rate,
        "invocations": invocations,
        "gb_seconds": used.gb_seconds,
        "reads": used.store_reads,
        "writes": used.store_writes,
        "usd": used.usd,
    }


def fixed_section() -> list[str]:
    """The monthly costs that do not depend on events, per cloud and topology."""
    out = [
        "## Fixed monthly costs",
        "",
        f"What a deployment costs before it copies an event, {HOURS_PER_MONTH} hours a month, "
        f"list prices ({PRICES_AS_OF}). They are larger than the per-event costs below for any "
        "migration under about a billion events. Each template deploys one of two topologies, "
        "chosen by one setting (AWS `NetworkMode`, Google Cloud and Azure `network_mode`): "
        "*peered* (VPC/VNet peering with Event Store Cloud, the default) or *public* (a public "
        "cluster reached through a NAT whose static egress IP its allowlist names). *both* "
        "rows are in either. Data processed by endpoints and NAT is extra, per GB: the events "
        "copied cross it once (and the source's reads, when the source is reached the same "
        "way).",
        "",
        "| cloud | topology | item | USD / month | + USD / GB | source |",
        "|---|---|---|---:|---:|---|",
    ]
    for f in FIXED:
        out.append(
            f"| {f.cloud} | {f.topology} | {f.item} | {f.monthly:,.2f} | "
            + (f"{f.per_gb:.3f}" if f.per_gb else "—")
            + f" | {f.note} |"
        )
    out += ["", "| cloud | peered, USD / month | public, USD / month |", "|---|---:|---:|"]
    for cloud in dict.fromkeys(f.cloud for f in FIXED):
        rows = [f for f in FIXED if f.cloud == cloud]
        peered = sum(f.monthly for f in rows if f.topology in ("peered", "both"))
        public = sum(f.monthly for f in rows if f.topology in ("public", "both"))
        out.append(f"| {cloud} | {peered:,.2f} | {public:,.2f} |")
    out += [
        "",
        "In the public topology the templates keep the AWS interface endpoints, the Google "
        "Cloud connector and the Azure private endpoints, so calls to the clouds' own services "
        "never cross the NAT: it carries the EventStoreDB traffic (on Azure also the "
        "function's telemetry to Azure Monitor and Entra ID sign-ins). One NAT gateway (AWS: "
        "in one Availability Zone, shared by the function's subnets) gives one address to "
        "allowlist; a NAT gateway per zone would double its row and add an address.",
        "",
    ]
    return out


def render(
    measured: list[Measured],
    run_note: str,
    machine: str = "",
    figures: capacity.Figures | None = None,
) -> str:
    out = [
        "# Cost model",
        "",
        f"Generated by `bench/replication_bench.py` on {datetime.now(UTC):%Y-%m-%d} from the "
        "rates that run measured at **5 ms emulated latency per target call, random "
        f"interleaving** ({run_note}). Re-run `make bench` to regenerate; do not edit by hand.",
        "",
    ]
    if machine:
        out += [f"Machine: {machine}.", ""]
    out += [
        "## Assumptions",
        "",
        f"- Prices: {PRICES_AS_OF}; on-demand list prices, no free tier, no savings plans.",
    ]
    for c in CLOUDS:
        out.append(
            f"  - {c.name}: {c.deployment}. Invocation ${c.per_invocation * 1e6:.2f}/M, "
            f"${c.per_gb_second:.8f}/GB-s"
            + (f", ${c.per_vcpu_second:.6f}/vCPU-s" if c.per_vcpu_second else "")
            + f"; {c.store}: read ${c.per_store_read * 1e6:.3f}/M, "
            f"write ${c.per_store_write * 1e6:.3f}/M. Source: {c.source}."
        )
    out += [
        f"- One slice per invocation (handlers chain the next one), at most {SLICE_EVENTS:,} "
        "events (the default budget) or the function's timeout less 10 s; "
        f"{START_SECONDS:g} s of start-up per invocation added to the busy time.",
        f"- Checkpoint store: {STORE_READS_PER_SLICE} reads and {STORE_WRITES_PER_SLICE} "
        "writes per slice (the job record read before each conditional write and by the "
        "checkpoint load; writes for lease acquire, commit, slice record with its counter, "
        "release), as the DynamoDB store does them; the same counts assumed for Firestore "
        "documents and Azure Table transactions. Chain messages (one per slice) are left out: "
        "a few cents per million slices.",
        "- Rate in the cloud = the measured rate, capped by the function's CPU share using the "
        "measured CPU seconds per million events after the process's start-up (the benchmark "
        "machine let the replicator use a whole core; start-up is the 2 s above). Network "
        "latency to real servers is what the 5 ms stands for.",
        "- Baselines run as a long-lived process (the Replicator is a service): their rows show "
        "compute only, as if hosted the same way, for comparison.",
        "",
    ]
    out += fixed_section()
    for cloud in CLOUDS:
        out += [f"## {cloud.name}", ""]
        out += [
            "| strategy | events/s | invocations / M | GB-s / M | store reads / M "
            "| store writes / M | USD / M events |"
        ]
        out += ["|---|---:|---:|---:|---:|---:|---:|"]
        for m in measured:
            f = per_million(m, cloud)
            counts = [
                f"{f[k]:,.0f}" if m.relay else "—" for k in ("invocations", "reads", "writes")
            ]
            out.append(
                f"| {m.strategy} | {f['rate']:,.0f} | {counts[0]} | {f['gb_seconds']:,.0f} "
                f"| {counts[1]} | {counts[2]} | {f['usd']:.3f} |"
            )
        out.append("")
    out += [
        "## Backfill time at 5 ms",
        "",
        "One job copies `$all` with one writer process at a time (the lease), so a backfill "
        "takes events ÷ rate, whatever the cloud (benchmark-machine rates; the cloud-capped "
        "rates above can be lower).",
        "",
        "| strategy | events/s | 100M events, hours | 1B events, hours |",
        "|---|---:|---:|---:|",
    ]
    for m in measured:
        out.append(
            f"| {m.strategy} | {m.rate:,.0f} | {1e8 / m.rate / 3600:,.1f} "
            f"| {1e9 / m.rate / 3600:,.0f} |"
        )
    if figures is not None:
        out += ["", *projection_section(figures)]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ the capacity projection


def figures_of(measured: list[Measured], latency_ms: float, workload: str, machine: str,
               commit: str) -> capacity.Figures | None:  # fmt: skip
    """Our relay's rows as the capacity model's figures (None when none was measured)."""
    modes = [m.figure() for m in measured if m.relay and m.rate > 0]
    if not modes:
        return None
    return capacity.Figures(
        measured_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        latency_ms=latency_ms,
        workload=workload,
        machine=machine,
        commit=commit,
        modes=modes,
    )


def write_figures(figures: capacity.Figures, path: Path = capacity.FIGURES_PATH) -> None:
    """core/capacity_figures.json: what `esdb-relay plan` projects from."""
    path.write_text(json.dumps(figures.model_dump(mode="json"), indent=2) + "\n")


def _hours(h: float) -> str:
    return f"{h:,.1f}" if h < 100 else f"{h:,.0f}"


def projection_section(
    figures: capacity.Figures, events: int = 1_000_000_000, hours: float = 24.0
) -> list[str]:
    """The capacity model's answer for a store of `events` (K chosen per cloud), and for
    100M / 1B / 10B events in the fastest ordered mode, from this run's figures."""
    out = [
        f"## Projection: {events / 1e9:g}B events within {hours:g} hours (K chosen per cloud)",
        "",
        "The capacity model (core/capacity.py, docs/capacity.md; `esdb-relay plan` answers "
        "the same for a real store) from this run's rates and CPU per event. K is the least "
        f"number of shards (chains) that copies within {hours:g} h, or the K that finishes "
        "soonest up to the cloud's cap. The target's write capacity and the source's scan "
        "capacity are not known here: the table says what the target must accept and how "
        "fast the source must scan (K times its log). USD = the functions, their invocations "
        "and checkpoint-store operations, plus the peered deployment's fixed costs for those "
        "hours. **K > 1 does not keep the global order across shards** (each shard keeps its "
        "streams' order).",
        "",
        "| mode | cloud | chain events/s | K = 1, hours | K | hours | bound "
        "| target must accept, events/s | source scans, records/s | USD |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for figure in figures.modes:
        q = capacity.Question(events=events, figure=figure, target_hours=hours)
        for a in capacity.answer(q):
            one, k = a.one_chain, a.sharded
            out.append(
                f"| {figure.label.removeprefix('ours, ')} | {a.cloud} | {one.chain_rate:,.0f} "
                f"| {_hours(one.hours)} | {k.shards} | {_hours(k.hours)} | {k.bound} "
                f"| {k.events_per_second:,.0f} | {k.source_scan_needed:,.0f} | {k.usd:,.0f} |"
            )
    ordered = [f for f in figures.modes if f.mode == "ordered"]
    if ordered:
        best = max(ordered, key=lambda f: f.events_per_second)
        out += [
            "",
            f"By store size, {best.label.removeprefix('ours, ')} (K, hours, USD):",
            "",
            "| events | " + " | ".join(c.key for c in capacity.CLOUDS) + " |",
            "|---:|" + "---|" * len(capacity.CLOUDS),
        ]
        for size in capacity.STORE_SIZES:
            q = capacity.Question(events=size, figure=best, target_hours=hours)
            cells = [
                f"{a.sharded.shards}, {_hours(a.sharded.hours)} h, ${a.sharded.usd:,.0f}"
                for a in capacity.answer(q)
            ]
            out.append(f"| {size / 1e6:,.0f}M | " + " | ".join(cells) + " |")
    return out
