"""What the emulators cost per event while a replicator copies: CPU µs per event of the source
emulator (serving `$all` reads), the target emulator (taking appends) and the replicator, for
our partitioned mode and the Replicator's 6 partitions, in one run (issue 18: on 2 shared
cores the emulators' CPU bounds what the benchmark can measure of the relay).

Each process's CPU is its own (`/proc/PID/stat` utime + stime around the run for the emulators,
`os.wait4` for the replicator); the source's CPU spent filling its store is left out.

    python -m bench.emulator_cost [--events 30000] [--streams 2000] [--latency-ms 5]
        [--seconds 10] [--partitions 8] [--repeat 1] [--no-baseline] [--spy DIR]

`--spy DIR`: also record each emulator with py-spy (`/tmp/spy/bin/py-spy`, or $PY_SPY) in
raw (collapsed stacks) format, only the threads holding the GIL (what costs CPU in
Python), one file per process and run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.processes import SERVED_PIDS, run_measured, served_emulator
from bench.strategies import BASELINE_PARTITIONED, Strategy, strategy_argv
from bench.workloads import BenchWorkload

_TICKS = os.sysconf("SC_CLK_TCK")
PY_SPY = os.environ.get("PY_SPY", "/tmp/spy/bin/py-spy")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass(frozen=True)
class Cost:
    strategy: str
    events: int
    seconds: float
    relay_us: float  # the replicator's CPU µs per event, after its start-up
    source_us: float
    target_us: float
    load: float  # 1-minute load average at the end

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(PY_SPY, "record", "--format", "raw", "--nonblocking", "--gil", "-r", "200"),
            *("-d", str(int(seconds) + 1), "-p", str(pid), "-o", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(
    strategy: Strategy,
    source: str,
    events: int,
    seconds: float,
    latency_ms: float,
    spy: Path | None,
    tag: str,
) -> Cost:
    with (
        served_emulator(latency_ms=latency_ms, multi_append=strategy.multi_append) as target,
        tempfile.TemporaryDirectory(prefix="emulator-cost-") as tmp,
    ):
        argv = strategy_argv(strategy, source, target, events, seconds, Path(tmp))
        pids = {"source": SERVED_PIDS[source], "target": SERVED_PIDS[target]}
        spies = []
        if spy is not None:
            spy.mkdir(parents=True, exist_ok=True)
            spies = [_spy(pid, spy / f"{tag}-{name}.txt", seconds) for name, pid in pids.items()]
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        m = run_measured(argv, timeout=seconds + 300)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for p in spies:
            p.wait(timeout=seconds + 60)
    n = int(m.output["events"]) or 1
    return Cost(
        strategy.name,
        int(m.output["events"]),
        float(m.output["seconds"]),
        m.running_cpu_per_million,
        (after["source"] - before["source"]) / n * 1e6,
        (after["target"] - before["target"]) / n * 1e6,
        os.getloadavg()[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--spy", type=Path, help="record py-spy profiles of the emulators here")
    args = parser.parse_args()
    ours = Strategy(
        f"ours, partitioned {args.partitions}",
        "relay",
        mode="partitioned",
        partitions=args.partitions,
        multi_append=True,
    )
    strategies = [ours] if args.no_baseline else [ours, BASELINE_PARTITIONED]
    workload = BenchWorkload(shape="random", events=args.events, streams=args.streams)
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    with served_emulator(workload) as source:
        for i in range(args.repeat):
            for k, strategy in enumerate(strategies):
                tag = f"{i}-{k}"
                cost = measure(
                    strategy, source, args.events, args.seconds, args.latency_ms, args.spy, tag
                )
                print(
                    f"{cost.strategy:36} {cost.rate:8,.0f} events/s  relay {cost.relay_us:6.1f}"
                    f"  source {cost.source_us:6.1f}  target {cost.target_us:6.1f} µs/event"
                    f"  (load {cost.load:.2f})",
                    flush=True,
                )
                print(json.dumps(asdict(cost)), flush=True)


if __name__ == "__main__":
    main()
