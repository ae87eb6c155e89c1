"""Where does our relay's CPU go? One bounded relay run under py-spy (GIL-holding samples, all
threads; `--wall` for every thread, waiting or not), summarised by function, inclusive. py-spy
is not a project dependency: install it in a throwaway venv (`python -m venv /tmp/spy &&
/tmp/spy/bin/pip install py-spy`) and pass `--py-spy /tmp/spy/bin/py-spy`.

    python -m bench.profile_relay --py-spy PATH [--mode partitioned --partitions 64]
        [--latency-ms 5] [--shape random] [--events 20000] [--streams 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.processes import ROOT, served_emulator
from bench.strategies import Strategy, relay_job
from bench.workloads import BenchWorkload

_FRAME = re.compile(r" \((?:.*/)?([^/]+)\.py:\d+\)")


def summarise(raw: Path, top: int, own: bool = False) -> list[str]:
    """Share of samples per function, from py-spy's raw (collapsed) output: inclusive, or
    (`own`) only where the function itself was running."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")[-1:] if own else stack.split(";")
        for name in {_FRAME.sub(r" (\1)", frame) for frame in frames}:
            inclusive[name] += n
    skip = ("threading)", "<module>", "runpy)", "relay_runner)")
    rows = [(k, v) for k, v in inclusive.most_common() if not k.endswith(skip)]
    return [f"{v / total:6.1%}  {k}" for k, v in rows[:top]] + [f"({total} samples)"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--py-spy", required=True, help="path to a py-spy executable")
    parser.add_argument("--mode", default="partitioned", choices=("ordered", "partitioned"))
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--shape", default="random", choices=("random", "realistic"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--wall", action="store_true", help="sample every thread, waiting or not (wall time)"
    )
    parser.add_argument("--own", action="store_true", help="own time, not inclusive")
    args = parser.parse_args()
    workload = BenchWorkload(shape=args.shape, events=args.events, streams=args.streams)
    partitions = args.partitions if args.mode == "partitioned" else 1
    strategy = Strategy("profiled", "relay", mode=args.mode, partitions=partitions)
    with (
        served_emulator(workload) as source,
        served_emulator(latency_ms=args.latency_ms) as target,
        tempfile.TemporaryDirectory(prefix="relay-profile-") as tmp,
    ):
        config = relay_job(source, target, strategy, Path(tmp))
        raw = Path(tmp) / "samples.txt"
        runner = ["-m", "bench.relay_runner", "--config", str(config)]
        spy = [args.py_spy, "record", "--format", "raw", "--rate", "100"]
        spy += [] if args.wall else ["--gil"]
        subprocess.run(
            [
                *spy,
                "--output",
                str(raw),
                "--",
                sys.executable,
                *runner,
                "--seconds",
                str(args.seconds),
            ],
            check=True,
            cwd=ROOT,
        )
        print("\n".join(summarise(raw, args.top, args.own)))


if __name__ == "__main__":
    main()
