"""Our relay, in its own process, for the benchmark: slices back to back (`Relay.run_once`, the
loop `esdb-relay run` and the cloud handlers use) until caught up or `--seconds` have passed.
Each slice gets the time left as its deadline, so the run stops by itself. Prints JSON (with
the CPU seconds spent before the relay started: imports, the interpreter, the job file).

    python -m bench.relay_runner --config job.json --seconds T [--shard I]

`--shard I`: run that shard of a job split into shards (its plan already stored).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bench.processes import own_peak_rss_mib
from core.config import JobConfig
from core.relay import Relay


def run(job: JobConfig, seconds: float, shard_index: int | None = None) -> dict[str, float]:
    startup = time.process_time()  # imports, the interpreter, the job file: not per event
    events = size = slices = 0
    with Relay(job) as relay:
        plan = relay.shard_plan() if shard_index is not None else None
        shard = plan.shard(job.job_id, shard_index) if plan and shard_index is not None else None
        started = time.perf_counter()
        while True:
            left = seconds - (time.perf_counter() - started)
            if left <= 0:
                break
            result = relay.run_once(remaining_seconds=left, shard=shard)
            slices += 1
            if result.status != "ok":
                raise SystemExit(f"slice {result.status}: {result.error}")
            events += result.events_written
            size += result.bytes_written
            if result.caught_up:
                break
        elapsed = time.perf_counter() - started
    return {
        "events": events,
        "bytes": size,
        "seconds": elapsed,
        "slices": slices,
        "startup_cpu_seconds": startup,
        "peak_rss_mib": own_peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True, help="job file (.json/.toml)")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--shard", type=int, help="the shard to run, of a sharded job")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # per-slice lines and the TLS-off warning are noise here
    print(json.dumps(run(JobConfig.load(file=args.config), args.seconds, args.shard)), flush=True)


if __name__ == "__main__":
    main()
