"""How fast does `esdb-relay verify` compare a source and a target, on this machine?

Both emulators run as their own processes (`esdb-relay emulator` with a snapshot of a generated,
already-migrated history), the verifier in this one — the set-up of a real run, where verify
talks to two servers over the network. Baseline in the same run: a bare read of both `$all`
logs with esdbclient (what verify cannot beat, since it reads every event of both sides).

    python -m bench.verify_bench [--events 20000] [--streams 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from bench.emulator_bench import emulator_process
from core.config import JobConfig
from core.eventstore import EventStore
from core.tools.verify import verify
from esdb_emulator import Emulator
from esdb_emulator.workload import Workload, generate
from tests.engine.helpers import make_job, run_until_caught_up


def prepare(events: int, streams: int, folder: Path) -> tuple[Path, Path]:
    """A generated source and its migrated copy, saved as snapshots."""
    with Emulator() as source, Emulator() as target:
        generate(source.store, Workload(events=events, streams=streams, links=False))
        run_until_caught_up(make_job(source, target, folder, budget={"max_events": 5000}))
        paths = folder / "source.gz", folder / "target.gz"
        source.save_snapshot(paths[0])
        target.save_snapshot(paths[1])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--streams", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        source_snapshot, target_snapshot = prepare(args.events, args.streams, Path(tmp))
        with (
            emulator_process(snapshot=source_snapshot) as source_uri,
            emulator_process(snapshot=target_snapshot) as target_uri,
            EventStore(source_uri, side="source") as source,
            EventStore(target_uri, side="target") as target,
        ):
            started = time.perf_counter()
            read = sum(1 for _ in source.read_all_after(None, 10**9))
            read += sum(1 for _ in target.read_all_after(None, 10**9))
            read_seconds = time.perf_counter() - started
            job = JobConfig.from_payload(
                {"job_id": "bench", "source": source_uri, "target": target_uri}
            )
            reports = {n: verify(job, source, target, workers=n) for n in (1, args.workers)}
    baseline = read / read_seconds
    first = reports[1]
    print(f"streams checked        {first.streams_checked:>12,}")
    print(f"events compared        {first.events_compared:>12,}")
    print(f"baseline: read both    {baseline:>12,.0f} records/s ({read_seconds:.1f} s)")
    for workers, report in reports.items():
        assert report.ok, report.differences[:5]
        rate = report.events_compared / report.seconds
        print(
            f"verify, {workers:>2} worker(s)    {rate:>12,.0f} events/s ({report.seconds:.1f} s)"
            f"  = {rate / baseline:.2f} of the baseline"
        )


if __name__ == "__main__":
    main()
