"""A shard that dies planning (run by tests/engine/test_shard_plans.py).

    python tests/crash/planner_child.py RECORDS

Plans the sharded job of the ESDB_RELAY_* env vars as its first shard does (`fix_plan`, the
default planning lease) and SIGKILLs itself once RECORDS records of the source's sample have
arrived: the job's planning lease is held, the plan not stored. It prints "sampling" first.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

from core.checkpoint import open_store
from core.config import JobConfig
from core.eventstore import EventStore
from core.model import Event
from core.shard_plans import fix_plan


def main() -> None:
    records = int(sys.argv[1])
    job = JobConfig.load()
    store = open_store(job.checkpoint_store)
    with EventStore(job.source.get_secret_value(), side="source") as source:
        read = source.read_all_after

        def dying(position: int | None, limit: int) -> Iterator[Event]:
            for seen, event in enumerate(read(position, limit), start=1):
                if seen == records:
                    print("sampling", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
                yield event

        source.read_all_after = dying  # type: ignore[method-assign]
        fix_plan(store, job.job_id, job.shards, source, "dead-planner", sample_records=100)
    raise SystemExit("the sample ended before the kill")


if __name__ == "__main__":
    main()
