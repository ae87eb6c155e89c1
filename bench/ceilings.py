"""The emulator's raw limits on this machine, measured with a bare esdbclient in its own process.

- read: `$all` streamed from the source with no server-side filter (what any relay must do);
  also gives the workload's mean event size (data + metadata) for MB/s.
- batch append: the source's own events, 100 per `append_to_stream` call (one BatchAppend
  round trip each), from `--writers` threads at once, each to its own streams, against a fresh
  target with the run's emulated latency. The best of the writer counts is the ceiling.
- bare copy: the least a one-process relay through esdbclient can do: read `$all` and append
  what it read, 100 events per call from 8 writer threads, to streams of its own, expecting
  any revision: no per-stream order, no checks, no checkpoint. What a relay can reach here.

Bounded by `--events` and `--seconds` each. Prints JSON.

    python -m bench.ceilings --source URI --target URI --events N --seconds T --writers 1,64
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time

from esdbclient import EventStoreDBClient, NewEvent, StreamState

BATCH = 100
COPY_WRITERS = 8


def read_ceiling(client: EventStoreDBClient, max_events: int, seconds: float) -> dict[str, float]:
    events = size = 0
    started = time.perf_counter()
    deadline = started + seconds
    for event in client.read_all(filter_exclude=[]):
        if event.stream_name.startswith("$") or event.type.startswith("$"):
            continue
        events += 1
        size += len(event.data) + len(event.metadata)
        if events >= max_events or time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - started
    return {"events": events, "seconds": elapsed, "mean_event_bytes": size / max(1, events)}


def sample_events(client: EventStoreDBClient, count: int) -> list[NewEvent]:
    sample = []
    for event in client.read_all(filter_exclude=[], limit=count * 2):
        if not (event.stream_name.startswith("$") or event.type.startswith("$")):
            sample.append(NewEvent(type=event.type, data=event.data, metadata=event.metadata))
        if len(sample) >= count:
            break
    return sample


def append_ceiling(
    client: EventStoreDBClient,
    sample: list[NewEvent],
    writers: int,
    max_events: int,
    seconds: float,
) -> dict[str, float]:
    written = [0] * writers
    started = time.perf_counter()
    deadline = started + seconds
    per_writer = max(BATCH, max_events // writers)

    def write(index: int) -> None:
        call = 0
        while written[index] < per_writer and time.perf_counter() < deadline:
            # fresh ids: the server would otherwise treat repeats as idempotent no-ops
            batch = [NewEvent(type=e.type, data=e.data, metadata=e.metadata) for e in sample]
            client.append_to_stream(
                f"ceiling-{writers}-{index}-{call % 50}",
                current_version=StreamState.ANY,
                events=batch,
            )
            written[index] += len(batch)
            call += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"events": sum(written), "seconds": time.perf_counter() - started}


def copy_ceiling(
    source: EventStoreDBClient,
    target: EventStoreDBClient,
    max_events: int,
    seconds: float,
    writers: int = COPY_WRITERS,
) -> dict[str, float]:
    batches: queue.Queue[list[NewEvent] | None] = queue.Queue(maxsize=4 * writers)
    written = [0] * writers
    started = time.perf_counter()
    deadline = started + seconds

    def write(index: int) -> None:
        call = 0
        while (batch := batches.get()) is not None:
            target.append_to_stream(
                f"copy-{index}-{call % 50}", current_version=StreamState.ANY, events=batch
            )
            written[index] += len(batch)
            call += 1

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    batch: list[NewEvent] = []
    read = 0
    for event in source.read_all(filter_exclude=[]):
        if event.stream_name.startswith("$") or event.type.startswith("$"):
            continue
        batch.append(NewEvent(type=event.type, data=event.data, metadata=event.metadata))
        read += 1
        if len(batch) == BATCH:
            batches.put(batch)
            batch = []
        if read >= max_events or time.perf_counter() >= deadline:
            break
    batches.put(batch)
    for _ in threads:
        batches.put(None)
    for t in threads:
        t.join()
    return {"events": sum(written), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--writers", default="1,64")
    parser.add_argument("--skip-read", action="store_true")
    args = parser.parse_args()
    source = EventStoreDBClient(args.source)
    target = EventStoreDBClient(args.target)
    result: dict[str, object] = {}
    if not args.skip_read:
        result["read"] = read_ceiling(source, args.events, args.seconds)
    sample = sample_events(source, BATCH)
    result["append"] = {
        str(n): append_ceiling(target, sample, n, args.events, args.seconds)
        for n in (int(w) for w in args.writers.split(","))
    }
    result["copy"] = copy_ceiling(source, target, args.events, args.seconds)
    source.close()
    target.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
