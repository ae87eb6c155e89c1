"""Peak RSS by history size in every mode (issue 18: within 20% from 100k to 1M events).

For each size, one source emulator (its own process) holds a realistic (bursty) history of N
events over N/10 streams, so the larger history has 10x the streams and every slice touches a
similar number of them: what grows is only what outlives a slice (a cache per stream would
show). Each of our modes copies it to the end into a fresh target (0 ms), in its own process,
measured by the kernel (`os.wait4`: peak RSS, CPU seconds). Sharded: K relay processes at
once, each ordered through AppendRecords; its row gives the largest shard process's peak
and every shard's CPU summed. Not verified here (verify takes 11+ minutes at 1M events):
bench/shards_bench.py verifies its sharded copies, the soaks and tests every mode's.

    python -m bench.rss_bench [--sizes 100000,1000000] [--seconds 1500] [--only "partitioned 8"]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from dataclasses import dataclass

from bench.processes import served_emulator
from bench.shards_bench import run_shards
from bench.strategies import STRATEGIES, run_strategy
from bench.workloads import BenchWorkload

GROWTH_GOAL = 0.20
SHARDS = 4
# "ours, ordered" without a multi-stream append (older targets) copies ~1,000 events/s:
# 1M events would take ~17 minutes; its memory is the ordered engine's, measured here
# through the two multi-append rows.
MODES = tuple(s for s in STRATEGIES if s.kind == "relay" and s.name != "ours, ordered")
SHARDED = f"ours, sharded {SHARDS} (each ordered + AppendRecords)"


@dataclass(frozen=True)
class Run:
    events: int
    seconds: float
    cpu_per_million: float  # after start-up
    peak_rss_mib: float


def _sharded(source: str, seconds: float) -> Run:
    r = run_shards(source, SHARDS, 0.0, "ordered", seconds, "26.1", verify_copy=False)
    return Run(r.events, r.wall_seconds, r.running_cpu_per_million, r.peak_rss_mib)


def _single(name: str, source: str, size: int, seconds: float) -> Run:
    strategy = next(s for s in MODES if s.name == name)
    m = run_strategy(strategy, source, size, seconds, 0.0)
    events = int(m.output["events"])
    return Run(events, float(m.output["seconds"]), m.running_cpu_per_million, m.peak_rss_mib)


def measure(sizes: list[int], names: list[str], seconds: float) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for size in sizes:
        workload = BenchWorkload(shape="realistic", events=size, streams=size // 10)
        started = time.perf_counter()
        with served_emulator(workload, start_timeout=3600.0) as source:
            print(f"{workload.label}: source ready in {time.perf_counter() - started:.0f}s")
            for name in names:
                if name == SHARDED:
                    run = _sharded(source, seconds)
                else:
                    run = _single(name, source, size, seconds)
                print(
                    f"  {name}: {run.events:,} events in {run.seconds:.0f}s, "
                    f"{run.peak_rss_mib:.1f} MiB",
                    flush=True,
                )
                runs[name].append(run)
    return runs


def report(sizes: list[int], runs: dict[str, list[Run]]) -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    head = " | ".join(f"{n:,} events ({n // 10:,} streams)" for n in sizes)
    lines = [
        f"Peak RSS by history size, 0 ms, realistic; {platform.machine()}, {os.cpu_count()} "
        f"CPUs, load average {load} (1/5/15 min) at the end.",
        "Each cell: events copied, events/s, relay CPU s / 1M events after start-up, peak RSS.",
        "",
        f"| mode | {head} | RSS growth |",
        "|---|" + "---|" * len(sizes) + "---:|",
    ]
    verdicts = []
    for name, row in runs.items():
        cells = " | ".join(
            f"{r.events:,}, {r.events / r.seconds:,.0f}/s, {r.cpu_per_million:,.0f}, "
            f"{r.peak_rss_mib:.1f} MiB"
            for r in row
        )
        whole = all(r.events == n for r, n in zip(row, sizes, strict=True))
        growth = row[-1].peak_rss_mib / row[0].peak_rss_mib - 1
        met = growth <= GROWTH_GOAL and whole
        lines.append(f"| {name} | {cells} | {growth:+.0%} |")
        verdicts.append(
            f"- {name}: {growth:+.0%} ({'PASS' if met else 'MISS'}: within "
            f"{GROWTH_GOAL:.0%}{'' if whole else '; a run did not copy its whole history'})"
        )
    return "\n".join([*lines, "", *verdicts])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="history sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=1500.0, help="bound of each run")
    parser.add_argument("--only", help="comma-separated parts of mode names to run")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [s.name for s in MODES] + [SHARDED]
    if args.only:
        names = [n for n in names if any(part in n for part in args.only.split(","))]
    print(report(sizes, measure(sizes, names, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
