"""The Event Store Replicator's write strategy, for baselines measured in the same run as ours.

What EventStore/replicator does (src/EventStore.Replicator/Replicator.cs, Sink/SinkPipe.cs,
Partitioning/HashPartitioner.cs, Esdb.Grpc/GrpcEventWriter.cs):
- a reader pages through `$all` into a bounded channel (capacity 50,000), system events are
  filtered out, and a sink pipe writes each event with its own
  `AppendToStreamAsync(stream, StreamState.Any, new[] { event })` — one round trip per event,
  no expected revision, event ids kept;
- with `partitionCount` > 1 the sink hashes the stream name to that many partitions; each
  partition writes its events one at a time, in order, concurrently with the others;
- the checkpoint is stored after each write (the file store flushes every N events).

Here: one reader thread streaming `$all` with esdbclient into bounded queues (50,000 events in
all), and 1 (ordered) or N (partitioned) writer threads sharing one client, each calling
`append_to_stream(stream, StreamState.ANY, NewEvent)` per event (the unary Append call, as
the .NET client's single-event append). The checkpoint write is left out (it favours the
baseline). Stops after `--events` events or `--seconds`, whichever first, and prints JSON.

    python -m bench.baselines --source URI --target URI --writers 6 --events N --seconds T
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
import zlib
from dataclasses import dataclass

from esdbclient import EventStoreDBClient, NewEvent, StreamState

from bench.processes import own_peak_rss_mib

CHANNEL_CAPACITY = 50_000  # Replicator.Capacity
_DONE = None


@dataclass
class _Counter:
    events: int = 0
    bytes: int = 0


def partition_of(stream: str, partitions: int) -> int:
    return zlib.crc32(stream.encode()) % partitions


def replicate(
    source_uri: str, target_uri: str, writers: int, max_events: int, seconds: float
) -> dict[str, float]:
    source = EventStoreDBClient(source_uri)
    target = EventStoreDBClient(target_uri)
    queues: list[queue.Queue[NewEvent | tuple[str, NewEvent] | None]] = [
        queue.Queue(maxsize=max(1, CHANNEL_CAPACITY // writers)) for _ in range(writers)
    ]
    counters = [_Counter() for _ in range(writers)]
    stop = threading.Event()
    started = time.perf_counter()
    deadline = started + seconds

    def put(q: queue.Queue[object], item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        sent = 0
        try:
            for event in source.read_all(filter_exclude=[]):
                if stop.is_set() or sent >= max_events:
                    break
                if event.stream_name.startswith("$") or event.type.startswith("$"):
                    continue  # the Replicator skips system events
                new = NewEvent(
                    id=event.id,
                    type=event.type,
                    data=event.data,
                    metadata=event.metadata,
                    content_type=event.content_type,
                )
                if not put(
                    queues[partition_of(event.stream_name, writers)], (event.stream_name, new)
                ):
                    break
                sent += 1
        finally:
            for q in queues:
                put(q, _DONE)

    def write(index: int) -> None:
        q, counter = queues[index], counters[index]
        while True:
            if time.perf_counter() >= deadline:
                stop.set()
                return
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _DONE:
                return
            stream, new = item  # type: ignore[misc]
            target.append_to_stream(stream, current_version=StreamState.ANY, events=new)
            counter.events += 1
            counter.bytes += len(new.data) + len(new.metadata)

    threads = [threading.Thread(target=read, daemon=True)]
    threads += [threading.Thread(target=write, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    threads[0].join(timeout=5)
    source.close()
    target.close()
    return {
        "events": sum(c.events for c in counters),
        "bytes": sum(c.bytes for c in counters),
        "seconds": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    startup = time.process_time()  # imports and the interpreter: not per event
    result = replicate(args.source, args.target, args.writers, args.events, args.seconds)
    result = {**result, "startup_cpu_seconds": startup, "peak_rss_mib": own_peak_rss_mib()}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
