"""The emulator's multi-stream append throughput against its one-stream batch-append ceiling.

Each figure on a fresh `esdb-relay emulator` in its own process (bench.emulator_bench's
set-up), the client in this one, ~500-byte JSON payloads. The cases run round-robin `--repeat`
times; the best rate of each is reported (the machine is shared, so the best is the least
disturbed), with the CPU time the emulator process and this client spent per 1,000 events
(contention barely changes CPU time, so those compare fairly across runs):
- batch append: one stream per call (esdbclient `append_to_stream`, `--batch` events a call);
- multi-append: `--batch` events spread over `--streams` streams in one AppendSession call,
  through core.eventstore's `multi_append` (what the engine uses);
- adapter one-stream append: the same adapter, `append` of `--batch` events to one stream;
- multi-append of `--batch` events to a single stream: the per-stream cost of AppendSession
  (one AppendRequest message per stream) shows as the difference to the case above.

    python -m bench.multi_append_bench [--events 50000] [--batch 500] [--streams 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from esdbclient import EventStoreDBClient, NewEvent, StreamState

from bench.emulator_bench import PAYLOAD, free_port
from core.eventstore import EventStore
from core.model import NO_STREAM, OutEvent, StreamAppend


@dataclass
class Emulated:
    uri: str
    pid: int

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextmanager
def emulator_process() -> Iterator[Emulated]:
    """`esdb-relay emulator` in its own process, as bench.emulator_bench starts it."""
    port = free_port()
    command = [sys.executable, "-m", "handlers.cli.main", "emulator", "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        yield Emulated(f"esdb://127.0.0.1:{port}?Tls=false", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _events(count: int) -> list[OutEvent]:
    return [
        OutEvent(uuid.uuid4(), "Benchmarked", "application/json", PAYLOAD, b"")
        for _ in range(count)
    ]


def batch_append(uri: str, events: int, batch: int) -> float:
    client = EventStoreDBClient(uri)
    try:
        calls = events // batch
        started = time.perf_counter()
        for b in range(calls):
            client.append_to_stream(
                f"batch-{b}",
                current_version=StreamState.NO_STREAM,
                events=[NewEvent(type="Benchmarked", data=PAYLOAD) for _ in range(batch)],
            )
        return calls * batch / (time.perf_counter() - started)
    finally:
        client.close()


def multi_append(uri: str, events: int, batch: int, streams: int) -> float:
    per_stream = batch // streams
    with EventStore(uri, side="target") as es:
        assert es.supports_multi_append()
        calls = events // batch
        started = time.perf_counter()
        for c in range(calls):
            es.multi_append(
                [StreamAppend(f"m{c}-{s}", NO_STREAM, _events(per_stream)) for s in range(streams)]
            )
        return calls * per_stream * streams / (time.perf_counter() - started)


def adapter_append(uri: str, events: int, batch: int) -> float:
    with EventStore(uri, side="target") as es:
        calls = events // batch
        started = time.perf_counter()
        for c in range(calls):
            es.append(f"a{c}", NO_STREAM, _events(batch))
        return calls * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {args.events} events, "
        f"batches of {args.batch}, multi-append over {args.streams} streams"
    )
    cases: dict[str, Callable[[str], float]] = {
        "batch append, one stream a call (esdbclient)": lambda uri: batch_append(
            uri, args.events, args.batch
        ),
        "adapter append, one stream a call": lambda uri: adapter_append(
            uri, args.events, args.batch
        ),
        f"multi-append, {args.streams} streams a call": lambda uri: multi_append(
            uri, args.events, args.batch, args.streams
        ),
        "multi-append, 1 stream a call": lambda uri: multi_append(uri, args.events, args.batch, 1),
    }
    best: dict[str, tuple[float, float, float]] = {}  # rate, server and client CPU/1k events
    for _ in range(args.repeat):
        for name, case in cases.items():
            with emulator_process() as emulated:
                server_cpu, client_cpu = emulated.cpu_seconds(), time.process_time()
                rate = case(emulated.uri)
                server_cpu = emulated.cpu_seconds() - server_cpu
                client_cpu = time.process_time() - client_cpu
            per_k = 1000 / args.events
            if name not in best or rate > best[name][0]:
                best[name] = (rate, server_cpu * per_k, client_cpu * per_k)
    print(f"{'case':48} {'events/s':>10} {'server CPU ms/1k':>17} {'client CPU ms/1k':>17}")
    for name, (rate, server, client) in best.items():
        print(f"{name:48} {rate:10,.0f} {server * 1000:17.1f} {client * 1000:17.1f}")
    ceiling = best[next(iter(best))][0]
    multi = best[next(k for k in best if k.startswith("multi"))][0]
    print(f"multi-append / batch-append ceiling: {multi / ceiling:.2f}")


if __name__ == "__main__":
    main()
