"""The emulator's multi-stream append throughput against its one-stream batch-append ceiling.

Each figure on a fresh `esdb-relay emulator` in its own process (bench.emulator_bench's
set-up), the client in this one, ~500-byte JSON payloads:
- batch append: one stream per call (esdbclient `append_to_stream`, `--batch` events a call);
- multi-append: `--batch` events spread over `--streams` streams in one AppendSession call,
  through core.eventstore's `multi_append` (what the engine uses);
- adapter one-stream append: the same adapter, `append` of `--batch` events to one stream.

    python -m bench.multi_append_bench [--events 50000] [--batch 500] [--streams 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from esdbclient import EventStoreDBClient, NewEvent, StreamState

from bench.emulator_bench import PAYLOAD, emulator_process
from core.eventstore import NO_STREAM, EventStore, OutEvent, StreamAppend


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
    }
    rates = {}
    for name, case in cases.items():
        with emulator_process() as uri:
            rates[name] = case(uri)
        print(f"{name:48} {rates[name]:10,.0f} events/s", flush=True)
    ceiling = next(iter(rates.values()))
    multi = rates[next(k for k in rates if k.startswith("multi"))]
    print(f"multi-append / batch-append ceiling: {multi / ceiling:.2f}")


if __name__ == "__main__":
    main()
