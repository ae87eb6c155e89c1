"""Sharded jobs: K shards as K relay processes at once vs one chain (K = 1), in the same run,
on a skewed history (a few hot streams, a long tail: bench/workloads.py).

For each K, a fresh target emulator (its own process, `--latency-ms` on every call), the
job's plan fixed first (from a sample of the source, as the first shard would), then K
`bench.relay_runner --shard I` processes started together, each measured by the kernel
(`os.wait4`: its own CPU seconds). Printed per K: events/s (all events over the wall time
until the last shard finished), total relay CPU seconds per million events (every shard's
process summed; also without start-up; the median of `--rounds` interleaved runs, since this
machine's CPU time per event moves with its load), the events each shard copied and the
largest one's share over the mean (measured, next to the plan's expectation from its sample),
and verify's verdict on the target (0 differences expected; the first round's copies).
Global order is not kept across shards.

    python -m bench.shards_bench [--events 60000] [--streams 3000] [--shards 4]
        [--latency-ms 5] [--mode ordered] [--target-version 26.1] [--seconds 600]
        [--sequential] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.processes import (
    Measured,
    python_module,
    run_measured,
    running_cpu_per_million,
    served_emulator,
)
from bench.workloads import BenchWorkload
from core.checkpoint import open_store
from core.config import JobConfig
from core.eventstore import EventStore
from core.shard_plans import fix_plan
from core.tools.verify import verify

CPU_GOAL = 1.15  # total relay CPU per event within 15% of one chain's
BALANCE_GOAL = 1.5  # the largest shard's events at most 1.5x the mean


@dataclass
class Result:
    shards: int
    sequential: bool
    events: int
    wall_seconds: float
    cpu_seconds: float
    startup_cpu_seconds: float
    per_shard: list[int]
    expected_share: float  # the plan's: largest shard over the mean, from its sample
    differences: int | None  # verify's, None when not verified
    peak_rss_mib: float  # the largest of the shard processes' own peaks
    # (CPU s/M with start-up, after start-up) of the same runs in later rounds: this
    # machine's CPU time per event moves with its load, so the CPU goal is judged on medians
    more_cpu_runs: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_per_million(self) -> float:
        return self.cpu_seconds / self.events * 1e6 if self.events else 0.0

    @property
    def running_cpu_per_million(self) -> float:
        return running_cpu_per_million(self.cpu_seconds, self.startup_cpu_seconds, self.events)

    @property
    def cpu_runs(self) -> list[tuple[float, float]]:
        """(with start-up, after start-up) CPU s per million events of every round."""
        return [(self.cpu_per_million, self.running_cpu_per_million), *self.more_cpu_runs]

    @property
    def median_cpu(self) -> float:
        return statistics.median(c for c, _ in self.cpu_runs)

    @property
    def median_running_cpu(self) -> float:
        return statistics.median(r for _, r in self.cpu_runs)

    @property
    def balance(self) -> float:
        """The largest shard's copied events over the mean."""
        if not self.events:
            return 1.0
        return max(self.per_shard) / (self.events / len(self.per_shard))


def run_shards(
    source: str,
    shards: int,
    latency_ms: float,
    mode: str,
    seconds: float,
    target_version: str | None = None,
    sequential: bool = False,
    verify_copy: bool = True,
) -> Result:
    """`verify_copy`: compare the target with the source at the end (verify reads every
    stream of both: ~1,500 events/s here, 11+ minutes at 1M events)."""
    with (
        served_emulator(latency_ms=latency_ms, server_version=target_version) as target,
        tempfile.TemporaryDirectory(prefix="shards-bench-") as tmp,
    ):
        job = {
            "job_id": "bench",
            "source": source,
            "target": target,
            "mode": mode,
            "partitions": 8 if mode == "partitioned" else 1,
            "shards": shards,
            "checkpoint_store": f"sqlite:///{tmp}/checkpoints.db",
            "budget": {"safety_margin_seconds": 0},
        }
        config = Path(tmp) / "job.json"
        config.write_text(json.dumps(job))
        loaded = JobConfig.load(file=config)
        expected_share = 1.0
        if shards > 1:
            with EventStore(source, side="source") as reader:
                plan = fix_plan(open_store(loaded.checkpoint_store), "bench", shards, reader, "b")
            expected_share = plan.balance
        argv = [
            python_module(
                "bench.relay_runner",
                "--config",
                str(config),
                "--seconds",
                str(seconds),
                *(["--shard", str(i)] if shards > 1 else []),
            )
            for i in range(shards)
        ]
        started = time.perf_counter()
        with ThreadPoolExecutor(1 if sequential else shards) as pool:
            runs: list[Measured] = list(pool.map(lambda a: run_measured(a, seconds + 300), argv))
        wall = time.perf_counter() - started
        differences = None
        if verify_copy:
            with EventStore(source, side="source") as s, EventStore(target, side="target") as t:
                differences = verify(loaded, s, t).differences_total
    per_shard = [int(m.output["events"]) for m in runs]
    return Result(
        shards,
        sequential,
        sum(per_shard),
        wall,
        sum(m.cpu_seconds for m in runs),
        sum(float(m.output.get("startup_cpu_seconds", 0.0)) for m in runs),
        per_shard,
        expected_share,
        differences,
        max(m.peak_rss_mib for m in runs),
    )


def report(
    workload: BenchWorkload,
    results: list[Result],
    latency_ms: float,
    mode: str,
    target_version: str | None = None,
) -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    one = results[0]
    lines = [
        f"sharded jobs: {workload.label}, {mode} mode per shard, target "
        f"{target_version or '25.1'} with {latency_ms:g} ms on every call; {os.cpu_count()} "
        f"CPUs, load average {load} (1/5/15 min) at the end",
        f"| shards | events/s | vs K=1 | relay CPU s / 1M events (running), median of "
        f"{len(one.cpu_runs)} | the rounds' running | vs K=1 | events per shard | largest / "
        "mean (plan's expectation) | verify |",
        "|---:|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.shards}{' one after another' if r.sequential else ''} | {r.rate:,.0f} | "
            f"{r.rate / one.rate:.2f}x | "
            f"{r.median_cpu:,.0f} ({r.median_running_cpu:,.0f}) | "
            f"{', '.join(f'{run:,.0f}' for _, run in r.cpu_runs)} | "
            f"{r.median_cpu / one.median_cpu:.2f}x | "
            f"{', '.join(f'{n:,}' for n in r.per_shard)} | {r.balance:.2f} "
            f"({r.expected_share:.2f}) | {r.differences} differences |"
        )
    for r in results[1:]:
        if r.sequential:
            continue
        # The CPU goal, after start-up (a fixed ~0.5 s per process), on the rounds' medians:
        # judged on the run at once and, when measured, on each shard's process alone (as on
        # K machines).
        alone = next((a for a in results if a.sequential and a.shards == r.shards), None)
        for judged, how in ((r, "at once"), (alone, "one after another")):
            if judged is None:
                continue
            cpu = judged.median_running_cpu / one.median_running_cpu
            lines.append(
                f"K={r.shards} {how}: CPU per event after start-up {cpu:.2f}x K=1 "
                f"({'met' if cpu <= CPU_GOAL else 'MISSED'}: <= {CPU_GOAL:.2f}x); with the "
                f"{r.shards} start-ups {judged.median_cpu / one.median_cpu:.2f}x"
            )
        lines.append(
            f"K={r.shards}: largest shard {r.balance:.2f}x the mean "
            f"({'met' if r.balance <= BALANCE_GOAL else 'MISSED'}: <= {BALANCE_GOAL}x); "
            f"copied correctly: {'yes' if r.differences == 0 else 'NO'}"
        )
    lines.append("global order is not kept across shards: each keeps its own streams' order")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--streams", type=int, default=3_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--mode", choices=("ordered", "partitioned"), default="ordered")
    parser.add_argument(
        "--target-version",
        choices=("24.10", "25.1", "26.1"),
        help="the KurrentDB version the target emulator behaves as (default 25.1)",
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="bound of each run")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="also run the K shards one after another (CPU without K processes contending)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each way, interleaved; CPU is judged on their medians (verify: the first)",
    )
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    workload = BenchWorkload(
        shape="skewed", events=args.events, streams=args.streams, min_payload=256, max_payload=2048
    )
    results: list[Result] = []
    with served_emulator(workload) as source:
        runs = [(1, False), (args.shards, False)]
        if args.sequential:
            runs.append((args.shards, True))
        for round_ in range(args.rounds):
            for i, (shards, sequential) in enumerate(runs):
                result = run_shards(
                    source,
                    shards,
                    args.latency_ms,
                    args.mode,
                    args.seconds,
                    args.target_version,
                    sequential,
                    verify_copy=round_ == 0,
                )
                print(
                    f"round {round_ + 1}, K={shards}{' one after another' if sequential else ''}"
                    f": {result.events:,} events in {result.wall_seconds:.1f}s, "
                    f"{result.running_cpu_per_million:.1f} CPU s/M after start-up",
                    flush=True,
                )
                if round_ == 0:
                    results.append(result)
                else:
                    results[i].more_cpu_runs.extend(result.cpu_runs)
    print(report(workload, results, args.latency_ms, args.mode, args.target_version), flush=True)


if __name__ == "__main__":
    main()
