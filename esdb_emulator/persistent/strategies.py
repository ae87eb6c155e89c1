"""Which consumer gets a message (PS/ConsumerStrategy/*.cs).

A strategy's `push` answers as ConsumerPushResult does: SENT, SKIPPED (this message cannot go
now, try the next) or FULL (no consumer has room: stop pushing).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import deque

from esdb_emulator.persistent.client import Client, Message
from esdb_emulator.persistent.settings import LINK_EVENT_TYPE

STRATEGIES = ("RoundRobin", "DispatchToSingle", "Pinned", "PinnedByCorrelation")

# ConsumerPushResult
SENT, SKIPPED, FULL = range(3)

_PIN_BUCKETS = 1024  # PS/ConsumerStrategy/PinnedState/PinnedConsumerState.cs MaxBucketCount


class RoundRobin:
    """PS/ConsumerStrategy/RoundRobinPersistentSubscriptionConsumerStrategy.cs."""

    name = "RoundRobin"

    def __init__(self) -> None:
        self.clients: deque[Client] = deque()

    def added(self, client: Client) -> None:
        self.clients.append(client)

    def removed(self, client: Client) -> None:
        self.clients.remove(client)

    def push(self, message: Message) -> int:
        for _ in range(len(self.clients)):
            client = self.clients.popleft()
            pushed = client.push(message)
            self.clients.append(client)
            if pushed:
                return SENT
        return FULL


class DispatchToSingle(RoundRobin):
    """Fill the first consumer, move on to the next only when it is full."""

    name = "DispatchToSingle"

    def push(self, message: Message) -> int:
        for _ in range(len(self.clients)):
            if self.clients[0].push(message):
                return SENT
            self.clients.rotate(-1)
        return FULL


class _Node:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.connected = True
        self.assigned = 0


class Pinned:
    """PS/ConsumerStrategy/Pinnable...cs and PinnedState/PinnedConsumerState.cs: the source
    stream (or `$correlationId`) hashes to one of 1024 buckets, each bucket is pinned to one
    consumer; a new consumer takes over buckets from the busiest ones."""

    def __init__(self, by_correlation: bool) -> None:
        self.name = "PinnedByCorrelation" if by_correlation else "Pinned"
        self.by_correlation = by_correlation
        self.nodes: list[_Node] = []
        self.buckets: dict[int, _Node] = {}
        self.in_flight: dict[int, int] = {}

    def _connected(self) -> list[_Node]:
        return [n for n in self.nodes if n.connected]

    def added(self, client: Client) -> None:
        node = _Node(client)
        self.nodes.append(node)
        client.on_confirmed.append(self._confirmed)
        connected = self._connected()
        total = sum(1 for n in self.buckets.values() if n.connected)
        balanced = math.ceil(total / len(connected))
        for other in connected:
            if other is node or other.assigned <= balanced:
                continue
            owned = sorted(
                (b for b, n in self.buckets.items() if n is other),
                key=lambda b: self.in_flight.get(b, 0),
            )
            for bucket in owned[: other.assigned - balanced]:
                self._assign(bucket, node)
        self.nodes = [n for n in self.nodes if n.connected or n.assigned > 0]

    def removed(self, client: Client) -> None:
        for node in self.nodes:
            if node.client is client:
                node.connected = False
        for bucket, node in self.buckets.items():
            if node.client is client:
                self.in_flight[bucket] = 0

    def _assign(self, bucket: int, node: _Node) -> None:
        previous = self.buckets.get(bucket)
        if previous is not None:
            previous.assigned -= 1
        self.buckets[bucket] = node
        node.assigned += 1

    def _bucket(self, message: Message) -> int:
        record = message.event or message.original
        source = record.stream
        if record.type == LINK_EVENT_TYPE:  # an unresolved link: its target's stream
            source = record.data.decode("utf-8", "replace").partition("@")[2] or source
        if self.by_correlation:
            try:
                meta = json.loads(record.metadata)
            except (ValueError, UnicodeDecodeError):
                meta = None
            if isinstance(meta, dict) and isinstance(meta.get("$correlationId"), str):
                source = meta["$correlationId"]
        return zlib.crc32(source.encode()) % _PIN_BUCKETS

    def _confirmed(self, client: Client, message: Message) -> None:
        bucket = self._bucket(message)
        node = self.buckets.get(bucket)
        if node is not None and node.client is client and self.in_flight.get(bucket, 0) > 0:
            self.in_flight[bucket] -= 1

    def push(self, message: Message) -> int:
        connected = self._connected()
        if sum(n.client.max_in_flight - n.client.in_flight for n in connected) <= 0:
            return FULL
        bucket = self._bucket(message)
        node = self.buckets.get(bucket)
        if node is None or not node.connected:
            node = min(connected, key=lambda n: n.assigned)
            self._assign(bucket, node)
            self.in_flight[bucket] = 0
        if not node.client.push(message):
            return SKIPPED
        self.in_flight[bucket] = self.in_flight.get(bucket, 0) + 1
        return SENT


def strategy(name: str) -> RoundRobin | Pinned:
    if name == "DispatchToSingle":
        return DispatchToSingle()
    if name in ("Pinned", "PinnedByCorrelation"):
        return Pinned(by_correlation=name == "PinnedByCorrelation")
    return RoundRobin()
