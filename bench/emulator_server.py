"""An emulator in its own process for the replication benchmarks.

Unlike `esdb-relay emulator`, it fills its store from a generated workload at start (faster than
decoding a snapshot, and nothing is saved at stop), and can restrict the emulated latency to
some gRPC methods. Prints `ready <port>` on stdout once it serves.

    python -m bench.emulator_server [--workload JSON] [--latency-ms 5] [--no-multi-append]
        [--server-version 26.1]
"""

from __future__ import annotations

import argparse
import signal
import threading

from bench.workloads import BenchWorkload, fill
from esdb_emulator import Emulator, FaultConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", help="BenchWorkload as JSON; empty store if omitted")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--latency-methods",
        default="",
        help="comma-separated gRPC methods the latency applies to (default: every call)",
    )
    parser.add_argument("--no-multi-append", action="store_true")
    parser.add_argument("--server-version", help="24.10, 25.1 (the default) or 26.1")
    args = parser.parse_args()

    faults = FaultConfig(
        latency_ms=args.latency_ms,
        methods=frozenset(m for m in args.latency_methods.split(",") if m),
    )
    options: dict[str, object] = {"faults": faults}
    if args.no_multi_append:
        options["multi_append"] = False
    if args.server_version:
        options["server_version"] = args.server_version
    db = Emulator("127.0.0.1", 0, **options)  # type: ignore[arg-type]
    if args.workload:
        fill(db.store, BenchWorkload.model_validate_json(args.workload))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    db.start()
    print(f"ready {db.port}", flush=True)
    try:
        stop.wait()
    finally:
        db.stop(grace=0)


if __name__ == "__main__":
    main()
