"""A relay process that freezes itself (SIGSTOP) at the N-th "written" step after its first
commit: in its second slice or later, holding the job's lease, between two target writes and
outside any checkpoint-store transaction.

    python tests/reliability/pausing_child.py N

Runs the job from ESDB_RELAY_* env vars until caught up once it is continued (SIGCONT).
"""

from __future__ import annotations

import os
import signal
import sys

from core.config import JobConfig
from core.relay import Relay


def main() -> None:
    pause_at = int(sys.argv[1])
    seen = 0
    committed = False

    def on_step(name: str) -> None:
        nonlocal seen, committed
        committed = committed or name == "committed"
        if name == "written" and committed:
            seen += 1
            if seen == pause_at:
                os.kill(os.getpid(), signal.SIGSTOP)

    with Relay(JobConfig.load(), on_step=on_step) as relay:
        relay.run(until_caught_up=True)


if __name__ == "__main__":
    main()
