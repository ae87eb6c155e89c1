"""The `$all` histories the replication benchmarks copy.

Built on esdb_emulator.workload: plain events only (no links, deletes, tombstones or metadata
streams), so every strategy, the Replicator baselines included, copies the same records and
their rates compare like for like. Two shapes:
- random: every event goes to a random stream (the worst case for batching same-stream runs);
- realistic: bursts per stream (mean run of 8 events), as applications write;
- skewed: a few hot streams holding much of the history and a long tail of small ones, in
  random interleaving (how shards balance: bench/shards_bench.py).
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from esdb_emulator.store import ANY, JSON, ProposedEvent, Store
from esdb_emulator.workload import Workload, generate, stream_name

Shape = Literal["random", "realistic", "skewed"]
HOT_STREAMS = 6  # the skewed shape's hot streams ...
HOT_SHARE = 0.3  # ... hold this share of its events; the tail's sizes fall as 1/rank^0.9


class BenchWorkload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    shape: Shape = Field(description="'random' (worst case) or 'realistic' (bursts per stream)")
    events: int = Field(ge=1, description="events in the history, >= 1")
    streams: int = Field(ge=1, description="streams the events are spread over, >= 1")
    min_payload: int = Field(default=512, ge=16, description="smallest event data, bytes")
    max_payload: int = Field(default=4096, ge=16, description="largest event data, bytes")
    seed: int = 7

    @model_validator(mode="after")
    def _payload_range(self) -> BenchWorkload:
        if self.min_payload > self.max_payload:
            raise ValueError(
                f"min_payload {self.min_payload} > max_payload {self.max_payload}: swap them"
            )
        return self

    @property
    def label(self) -> str:
        kib = f"{self.min_payload / 1024:g}-{self.max_payload / 1024:g} KiB"
        return f"{self.shape}, {self.events:,} events / {self.streams:,} streams, {kib}"

    def as_emulator_workload(self) -> Workload:
        return Workload(
            events=self.events,
            streams=self.streams,
            interleaving="random" if self.shape == "random" else "bursty",
            burst=8,
            min_payload=self.min_payload,
            max_payload=self.max_payload,
            soft_deleted=0.0,
            tombstoned=0.0,
            with_metadata=0.0,
            links=False,
            non_json_metadata=0.0,
            seed=self.seed,
        )


def fill(store: Store, workload: BenchWorkload) -> int:
    """Append the workload's events to `store`; returns the number of events."""
    if workload.shape == "skewed":
        return _fill_skewed(store, workload)
    return generate(store, workload.as_emulator_workload())["events"]


def _fill_skewed(store: Store, workload: BenchWorkload) -> int:
    rng = random.Random(workload.seed)
    hot = min(HOT_STREAMS, max(1, workload.streams // 10))
    tail = workload.streams - hot
    weights = [HOT_SHARE / hot] * hot
    if tail:
        ranks = [1 / (r + 1) ** 0.9 for r in range(tail)]
        total = sum(ranks)
        weights += [(1 - HOT_SHARE) * w / total for w in ranks]
    order = list(range(workload.streams))
    rng.shuffle(order)  # hot and tail streams' names mixed, not the first ids hot
    picks = rng.choices(order, weights=weights, k=workload.events)
    for n, index in enumerate(picks):
        size = rng.randint(workload.min_payload, workload.max_payload)
        body = json.dumps({"n": n, "pad": "x" * max(0, size - 24)}).encode()
        event = ProposedEvent(str(uuid.UUID(int=rng.getrandbits(128))), "Happened", JSON, body)
        store.append(stream_name(index), ANY, [event])
    return workload.events
