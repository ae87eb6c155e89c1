"""A relay process that SIGKILLs itself at a chosen step boundary (run by test_sigkill.py).

    python tests/crash/relay_child.py STEP N [DELAY [SHARD]]

Runs the job from ESDB_RELAY_* env vars until caught up; at the N-th time the engine reaches
STEP ("read", "append", "written", "commit", "committed") the process kills itself with
SIGKILL — after DELAY seconds on a background thread, so a kill at "append" lands while that
append is in flight. STEP "none" runs to completion. SHARD: run that shard of a job split
into shards (ESDB_RELAY_SHARDS), as `esdb-relay run --shard SHARD` does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from core.config import JobConfig
from core.relay import Relay


def main() -> None:
    step, occurrence = sys.argv[1], int(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    shard_index = int(sys.argv[4]) if len(sys.argv) > 4 else None
    seen = 0

    def kill() -> None:
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGKILL)

    def on_step(name: str) -> None:
        nonlocal seen
        if name != step:
            return
        seen += 1
        if seen == occurrence:
            if delay:
                threading.Thread(target=kill, daemon=True).start()
            else:
                kill()

    with Relay(JobConfig.load(), on_step=on_step) as relay:
        plan = relay.shard_plan() if shard_index is not None else None
        shard = plan.shard(relay.job.job_id, shard_index) if plan is not None else None
        relay.run(until_caught_up=True, shard=shard)


if __name__ == "__main__":
    main()
