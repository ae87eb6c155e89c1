"""Generated event histories for the demo, tests and benchmarks.

Writes straight into a Store (seeding a million events through gRPC would take minutes)
with the same rules a client append goes through. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from esdb_emulator.store import ANY, JSON, OCTET_STREAM, ProposedEvent, Store

CATEGORIES = ("order", "customer", "invoice", "shipment", "cart", "payment")
EVENT_TYPES = ("Created", "Updated", "ItemAdded", "ItemRemoved", "Confirmed", "Closed")


@dataclass(frozen=True)
class Workload:
    events: int = 10_000
    streams: int = 500
    interleaving: str = "bursty"  # "bursty" (runs per stream) or "random" (worst case)
    burst: int = 8  # mean run length of one stream in bursty mode
    min_payload: int = 64
    max_payload: int = 512
    soft_deleted: float = 0.02  # fraction of streams soft deleted at the end
    tombstoned: float = 0.01  # fraction of streams tombstoned at the end
    with_metadata: float = 0.05  # fraction of streams given $maxCount / $tb / custom metadata
    links: bool = (
        True  # $> link events into $ce-<category> streams, like the $by_category projection
    )
    non_json_metadata: float = 0.01  # fraction of events whose custom metadata is not JSON
    # Extra streams named like `ünï.strm-1a2b` (non-ASCII), some of whose events have long
    # non-ASCII types (200 characters); the first is tombstoned at the end, the second soft
    # deleted, so the deletion paths meet such names too.
    odd_streams: int = 0
    seed: int = 42


ODD_TYPES = ("ÉvénementNoté", "ü" * 200, "Ω-" + "ñ" * 198, "PlainOdd")


def stream_name(i: int) -> str:
    return f"{CATEGORIES[i % len(CATEGORIES)]}-{i:06d}"


def odd_stream_name(i: int) -> str:
    return f"ünï.strm-{(i * 40503 + 7) & 0xFFFF:04x}"


def _name(workload: Workload, i: int) -> str:
    return stream_name(i) if i < workload.streams else odd_stream_name(i - workload.streams)


def _event_type(rng: random.Random, name: str) -> str:
    if name.startswith("ünï."):
        return rng.choice(ODD_TYPES)
    return f"{name.split('-')[0].capitalize()}{rng.choice(EVENT_TYPES)}"


def _payload(rng: random.Random, size: int, n: int) -> bytes:
    body = {"n": n, "pad": ""}
    raw = json.dumps(body)
    body["pad"] = "x" * max(0, size - len(raw))
    return json.dumps(body).encode()


def generate(
    store: Store,
    workload: Workload,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Append the workload's events to `store`. Returns counts by kind."""
    rng = random.Random(workload.seed)
    total = workload.streams + workload.odd_streams
    revisions = [-1] * total
    written = links = 0
    counts = {"events": 0, "links": 0, "metadata": 0, "soft_deleted": 0, "tombstoned": 0}
    current = rng.randrange(workload.streams)
    run_left = 0
    while written < workload.events:
        if workload.interleaving == "random" or run_left <= 0:
            current = rng.randrange(total)
            run_left = max(1, int(rng.expovariate(1 / workload.burst)))
        batch = 1 if workload.interleaving == "random" else min(run_left, workload.events - written)
        run_left -= batch
        name = _name(workload, current)
        events = []
        for _ in range(batch):
            n = written + len(events)
            size = rng.randint(workload.min_payload, workload.max_payload)
            if rng.random() < workload.non_json_metadata:
                metadata = b"\x00\xffbinary-metadata"
            else:
                metadata = json.dumps(
                    {"correlationId": str(uuid.UUID(int=rng.getrandbits(128)))}
                ).encode()
            events.append(
                ProposedEvent(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128))),
                    type=_event_type(rng, name),
                    content_type=JSON,
                    data=_payload(rng, size, n),
                    metadata=metadata,
                )
            )
        result = store.append(name, revisions[current], events)
        revisions[current] = result.last_revision
        written += len(events)
        if workload.links:
            category = name.split("-")[0]
            link_events = [
                ProposedEvent(
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    "$>",
                    OCTET_STREAM,
                    f"{rev}@{name}".encode(),
                )
                for rev in range(result.first_revision, result.last_revision + 1)
            ]
            store.append(f"$ce-{category}", ANY, link_events)
            links += len(link_events)
        if progress:
            progress(len(events))
    counts["events"] = written
    counts["links"] = links
    for i in range(total):
        if revisions[i] < 0:
            continue
        roll = rng.random()
        name = _name(workload, i)
        if i >= workload.streams and i - workload.streams < 2:
            if i == workload.streams:
                store.tombstone(name, revisions[i])
                counts["tombstoned"] += 1
            else:
                store.delete(name, revisions[i])
                counts["soft_deleted"] += 1
            continue
        if roll < workload.with_metadata:
            kind = rng.choice(("maxCount", "tb", "custom"))
            meta: dict[str, object] = {"owner": "demo", "$cacheControl": 60}
            if kind == "maxCount":
                meta["$maxCount"] = max(1, revisions[i])
            elif kind == "tb":
                meta["$tb"] = max(1, revisions[i] // 2)
            store.set_metadata(name, meta)
            counts["metadata"] += 1
        elif roll < workload.with_metadata + workload.soft_deleted:
            store.delete(name, revisions[i])
            counts["soft_deleted"] += 1
        elif roll < workload.with_metadata + workload.soft_deleted + workload.tombstoned:
            store.tombstone(name, revisions[i])
            counts["tombstoned"] += 1
    return counts
