"""How fast is the emulator with esdbclient as the client, on this machine?

Later benchmarks compare replication strategies against the emulator, so it must not be their
bottleneck. Measured two ways, in one run:
- emulator in its own process (`esdb-relay emulator`), client in this one — the set-up of the
  replication benchmarks (a client process and a server process);
- emulator in this process — the set-up of the tests (client and server share one GIL).

Figures: single-event appends/s (one `append_to_stream` per event), batch-append events/s
(100-event batches), `$all` read events/s. Payloads are ~500 bytes of JSON. For the emulator in
its own process, also its CPU µs per event in each (its own utime + stime from /proc): what the
emulator costs, apart from the client's share and the machine's load.

    python -m bench.emulator_bench [--events 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from esdbclient import EventStoreDBClient, NewEvent, StreamState

from bench.emulator_cost import cpu_seconds
from esdb_emulator import Emulator

PAYLOAD = json.dumps({"pad": "x" * 480}).encode()
# The process id of each emulator `emulator_process` serves, by its connection string.
PIDS: dict[str, int] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def emulator_process(snapshot: Path | None = None) -> Iterator[str]:
    """`esdb-relay emulator` in its own process (loading `snapshot` if given)."""
    port = free_port()
    extra = ["--snapshot", str(snapshot)] if snapshot else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "handlers.cli.main", "emulator", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("emulator process did not start")
        uri = f"esdb://127.0.0.1:{port}?Tls=false"
        PIDS[uri] = proc.pid
        yield uri
    finally:
        PIDS.pop(f"esdb://127.0.0.1:{port}?Tls=false", None)
        proc.terminate()
        proc.wait(timeout=10)


def measure(uri: str, events: int, pid: int | None = None) -> dict[str, float]:
    """The three figures; with the emulator's `pid`, its CPU µs per event in each too."""
    client = EventStoreDBClient(uri)
    server: dict[str, float] = {}

    def server_cpu() -> float:
        return cpu_seconds(pid) if pid is not None else 0.0

    try:
        single = max(500, events // 10)
        stream = f"single-{uuid.uuid4()}"
        cpu = server_cpu()
        started = time.perf_counter()
        for i in range(single):
            client.append_to_stream(
                stream,
                current_version=i - 1 if i else StreamState.NO_STREAM,
                events=NewEvent(type="Benchmarked", data=PAYLOAD),
            )
        single_rate = single / (time.perf_counter() - started)
        server["single_append_cpu_us"] = (server_cpu() - cpu) / single * 1e6

        batch_size = 100
        batches = events // batch_size
        cpu = server_cpu()
        started = time.perf_counter()
        for b in range(batches):
            client.append_to_stream(
                f"batch-{b % 500}",
                current_version=StreamState.ANY,
                events=[NewEvent(type="Benchmarked", data=PAYLOAD) for _ in range(batch_size)],
            )
        batch_rate = batches * batch_size / (time.perf_counter() - started)
        server["batch_append_cpu_us"] = (server_cpu() - cpu) / (batches * batch_size) * 1e6

        cpu = server_cpu()
        started = time.perf_counter()
        read = sum(1 for _ in client.read_all(filter_exclude=[]))
        read_rate = read / (time.perf_counter() - started)
        server["read_all_cpu_us"] = (server_cpu() - cpu) / read * 1e6
    finally:
        client.close()
    return {
        "single_append_per_s": single_rate,
        "batch_append_events_per_s": batch_rate,
        "read_all_events_per_s": read_rate,
        "read_events": read,
        **(server if pid is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with emulator_process() as uri:
        separate = measure(uri, args.events, PIDS[uri])
    with Emulator() as db:
        same = measure(db.uri, args.events)
    print(f"{'figure':32} {'separate process':>18} {'same process':>14} {'ratio':>7}")
    for key in ("single_append_per_s", "batch_append_events_per_s", "read_all_events_per_s"):
        print(
            f"{key:32} {separate[key]:18,.0f} {same[key]:14,.0f} {separate[key] / same[key]:7.2f}"
        )
    print(
        "emulator CPU µs per event (its own process): "
        + ", ".join(
            f"{key.removesuffix('_cpu_us')} {separate[key]:.1f}"
            for key in ("single_append_cpu_us", "batch_append_cpu_us", "read_all_cpu_us")
        )
    )
    print(
        "batch/single append ratio (separate process): "
        f"{separate['batch_append_events_per_s'] / separate['single_append_per_s']:.1f}x"
    )


if __name__ == "__main__":
    main()
