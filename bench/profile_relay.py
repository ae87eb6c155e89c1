"""Where does our relay's CPU go? One bounded relay run under py-spy (GIL-holding samples, all
threads; `--wall` for every thread, waiting or not), summarised by function, inclusive. py-spy
is not a project dependency: install it in a throwaway venv (`python -m venv /tmp/spy &&
/tmp/spy/bin/pip install py-spy`) and pass `--py-spy /tmp/spy/bin/py-spy`.

    python -m bench.profile_relay --py-spy PATH [--mode partitioned --partitions 64]
        [--no-multi-append] [--server-version 26.1] [--latency-ms 5] [--shape random]
        [--events 20000] [--streams 2000] [--seconds 60] [--rate 100] [--parts] [--native]
        [--raw FILE]

`--parts` adds where the time goes by part of the relay (`parts`): each sample goes to the
innermost frame of a module the table names, so a JSON parse counts for whoever asked for it.
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
# (part, path fragments of its modules); the first part whose fragment a frame's path holds.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up (imports)", ("<frozen importlib",)),
    ("gRPC (channel, calls, threads)", ("grpc/", "core/eventstore/internals.py")),
    ("read: decode `$all` records", ("esdbclient/", "core/eventstore/client.py",
                                     "core/eventstore/reads.py", "core/engine/reader.py")),
    ("plan: rules, provenance metadata", ("core/engine/plan.py", "core/rules.py",
                                          "core/scavenge.py", "core/model.py")),
    ("append requests (v2 records)", ("core/eventstore/v2.py", "core/eventstore/v2_wire.py",
                                      "core/eventstore/multi.py")),
    ("engine: batching, writers, watermark", ("core/engine/",)),
    ("checkpoint store, retries, other", ("core/", "tenacity", "sqlite")),
)  # fmt: skip


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


def by_part(raw: Path) -> list[str]:
    """Share of samples per part of the relay (`PARTS`), from py-spy's raw output."""
    shares: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        shares[_part(stack.split(";"))] += int(count)
    return [f"{n / total:6.1%}  {part}" for part, n in shares.most_common()]


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        for part, fragments in PARTS:
            if any(f in frame for f in fragments):
                return part
    return "native, no Python frame"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--py-spy", required=True, help="path to a py-spy executable")
    parser.add_argument("--mode", default="partitioned", choices=("ordered", "partitioned"))
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument(
        "--no-multi-append",
        dest="multi_append",
        action="store_false",
        help="the target offers no multi-stream append (by default it offers 25.1's)",
    )
    parser.add_argument(
        "--server-version", help="the target emulator's KurrentDB version (26.1: AppendRecords)"
    )
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--shape", default="random", choices=("random", "realistic"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=100, help="py-spy's samples per second")
    parser.add_argument(
        "--wall", action="store_true", help="sample every thread, waiting or not (wall time)"
    )
    parser.add_argument("--own", action="store_true", help="own time, not inclusive")
    parser.add_argument("--parts", action="store_true", help="also by part of the relay")
    parser.add_argument(
        "--native", action="store_true", help="with native frames and thread names (raw file)"
    )
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples in this file")
    args = parser.parse_args()
    workload = BenchWorkload(shape=args.shape, events=args.events, streams=args.streams)
    partitions = args.partitions if args.mode == "partitioned" else 1
    strategy = Strategy(
        "profiled",
        "relay",
        mode=args.mode,
        partitions=partitions,
        multi_append=args.multi_append,
        target_version=args.server_version,
    )
    with (
        served_emulator(workload) as source,
        served_emulator(
            latency_ms=args.latency_ms,
            multi_append=args.multi_append,
            server_version=args.server_version,
        ) as target,
        tempfile.TemporaryDirectory(prefix="relay-profile-") as tmp,
    ):
        config = relay_job(source, target, strategy, Path(tmp))
        raw = args.raw or Path(tmp) / "samples.txt"
        runner = ["-m", "bench.relay_runner", "--config", str(config)]
        spy = [args.py_spy, "record", "--format", "raw", "--rate", str(args.rate)]
        spy += [] if args.wall else ["--gil"]
        spy += ["--native", "--threads"] if args.native else []
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
        if args.parts:
            print("\n".join(by_part(raw)))


if __name__ == "__main__":
    main()
