"""The `event_store.client.persistent_subscriptions.PersistentSubscriptions` gRPC service.

A Python model of EventStoreDB's persistent subscription subsystem, written from reading the
server (EventStore/EventStore: src/EventStore.Core/Services/PersistentSubscription/*.cs, here
"PS/<file>", and src/EventStore.Core/Services/Transport/Grpc/PersistentSubscriptions.*.cs, here
"Grpc/<file>") and esdbclient's suite against a real server (pyeventsourcing/esdbclient
tests/test_client.py, test_subscription_*).

As the real server does it:
- Groups are keyed `<stream>::<group>` (`$all::<group>`); that key is the subscription id the
  Read call confirms. Their settings are saved as one `$PersistentConfig` event in
  `$persistentSubscriptionConfig` (PS/PersistentSubscriptionService.cs SaveConfiguration), so
  they survive a snapshot and RestartSubsystem reloads them; checkpoints are
  `$SubscriptionCheckpoint` events in `$persistentsubscription-<key>-checkpoint` (a JSON string,
  "12" or "C:1/P:1"); parked messages are `$>` links in `$persistentsubscription-<key>-parked`.
- Start positions are inclusive ("start" = 0 / C:0/P:0, "end" = -1 / C:-1/P:-1 = only events
  written after the group was (re)built); a checkpoint wins over the start position.
- Delivery takes the retry buffer first, then the read buffer; a consumer may have as many
  messages in flight as the `buffer_size` it asked for; strategies DispatchToSingle, RoundRobin,
  Pinned and PinnedByCorrelation (PS/ConsumerStrategy/*.cs).
- Acks; nacks park / retry / skip / stop (stop, like the server, only forgets the message) /
  unknown (= retry); message timeouts retry with retry_count + 1 and park once
  retry_count >= max_retry_count; a consumer that leaves has its in-flight messages retried.
- Checkpoints by sequence number as in PS/PersistentSubscription.cs TryMarkCheckpoint: the
  position before the oldest unacknowledged message, written when max_checkpoint_count
  messages are done, or on the timer once checkpoint_after has passed and at least
  min_checkpoint_count are done (checkpoint_after 0 means never by time).
- GetInfo/List report PS/PersistentSubscriptionStats.cs fields, including
  last_checkpointed_event_position, last_known_event_position and start_from.
- Errors carry the real status codes, messages and trailing metadata (Grpc/RpcExceptions.cs), so
  esdbclient raises NotFound, AlreadyExists, MaximumSubscriptionsReached, InternalError...

Deliberate differences:
- The server's timer ticks every second (PersistentSubscriptionService.cs); the emulator ticks
  every `PersistentSubscriptionsService.tick_seconds` (0.1 s) so timeouts and time-based
  checkpoints are observed sooner.
- Events are pulled from the store by one background thread rather than pushed on commit;
  every event carries its commit position, read from history or live, as the server's do.
- The default `$all` filter (EventFilter.cs DefaultAllFilter: no `$epoch-information`, no
  `$all` subscription checkpoints or parked messages) also applies to history reads.
- A filtered `$all` group advances its checkpoint over filtered-out events only while no
  buffered message is waiting (the server can checkpoint past buffered, undelivered events).
- Pinned strategies hash stream names with crc32 instead of xxHash.
- With extra statistics, each connection's push-to-ack latencies are reported
  (esdb_emulator.request_stats).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import json
import logging
import math
import re
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn

import grpc
from esdbclient.protos.Grpc import persistent_pb2, persistent_pb2_grpc, shared_pb2

from esdb_emulator.request_stats import RequestStatistics
from esdb_emulator.store import (
    ANY,
    JSON,
    OCTET_STREAM,
    ProposedEvent,
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
    visible_in_all,
)
from esdb_emulator.streams import Guard

log = logging.getLogger(__name__)

ALL = "$all"
CONFIG_STREAM = "$persistentSubscriptionConfig"  # SystemStreams.PersistentSubscriptionConfig
CONFIG_EVENT_TYPE = "$PersistentConfig"  # SystemEventTypes.PersistentSubscriptionConfig
CHECKPOINT_EVENT_TYPE = "$SubscriptionCheckpoint"
LINK_EVENT_TYPE = "$>"
STRATEGIES = ("RoundRobin", "DispatchToSingle", "Pinned", "PinnedByCorrelation")
# UpdateReq only carries the deprecated enum; the server uses its name (Grpc/...Update.cs).
_NAMED_STRATEGIES = {0: "DispatchToSingle", 1: "RoundRobin", 2: "Pinned"}

# PersistentSubscriptionService creates its PersistentSubscriptionStreamReader with 100.
_MAX_PULL_BATCH = 100
_PAGE = 500
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1
_I32_MIN = -(2**31)
_PIN_BUCKETS = 1024  # PS/ConsumerStrategy/PinnedState/PinnedConsumerState.cs MaxBucketCount
_HANDLER_EXCEPTION = "Exception was thrown by handler."
_BATCH_TOO_BIG = (
    # PersistentSubscription's constructor throws ArgumentOutOfRangeException(paramName: ...)
    "Specified argument was out of the range of valid values. "
    "(Parameter 'ReadBatchSize may not be greater than or equal to BufferSize')"
)

# ReadReq.Nack.Action
_NACK_UNKNOWN, _NACK_PARK, _NACK_RETRY, _NACK_SKIP, _NACK_STOP = range(5)
# ConsumerPushResult
_SENT, _SKIPPED, _FULL = range(3)

Pos = int | tuple[int, int]  # a stream revision, or (commit, prepare) in `$all`


# ---------------------------------------------------------------------------------- errors
def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    details: str,
    metadata: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    if metadata:
        # A value Kestrel refuses (a non-ASCII stream name) ends the call as on a real node:
        # esdb_emulator.headers.
        context.set_trailing_metadata(metadata)
    context.abort(code, details)
    raise AssertionError("context.abort returned")  # pragma: no cover


def _fail(context: grpc.ServicerContext, stream: str, group: str, reason: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionFailed
    _abort(
        context,
        grpc.StatusCode.INTERNAL,
        f"Subscription group {group} on stream {stream} failed: '{reason}'",
        (
            ("exception", "persistent-subscription-failed"),
            ("stream-name", stream),
            ("group-name", group),
            ("reason", reason),
        ),
    )


def _not_found(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionDoesNotExist
    _abort(
        context,
        grpc.StatusCode.NOT_FOUND,
        f"Subscription group {group} on stream {stream} does not exist.",
        (
            ("exception", "persistent-subscription-does-not-exist"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def _exists(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionExists
    _abort(
        context,
        grpc.StatusCode.ALREADY_EXISTS,
        f"Subscription group {group} on stream {stream} exists.",
        (
            ("exception", "persistent-subscription-exists"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def _max_subscribers(context: grpc.ServicerContext, stream: str, group: str) -> NoReturn:
    # RpcExceptions.PersistentSubscriptionMaximumSubscribersReached; esdbclient maps
    # FAILED_PRECONDITION "Maximum subscriptions reached..." to MaximumSubscriptionsReached.
    _abort(
        context,
        grpc.StatusCode.FAILED_PRECONDITION,
        f"Maximum subscriptions reached for subscription group {group} on stream {stream}.",
        (
            ("exception", "maximum-subscribers-reached"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def _dropped(stream: str, group: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    # RpcExceptions.PersistentSubscriptionDropped: a consumer dropped by the server (the group
    # was updated, deleted or restarted, or its source could not be read).
    return (
        grpc.StatusCode.CANCELLED,
        f"Subscription group {group} on stream {stream} was dropped.",
        (
            ("exception", "persistent-subscription-dropped"),
            ("stream-name", stream),
            ("group-name", group),
        ),
    )


def _handler_exception(context: grpc.ServicerContext) -> NoReturn:
    # An exception escaping a gRPC handler of the real server (e.g. InvalidOperationException
    # for a missing oneof) reaches the client as UNKNOWN "Exception was thrown by handler.".
    _abort(context, grpc.StatusCode.UNKNOWN, _HANDLER_EXCEPTION)


# ------------------------------------------------------------------------------ helpers
def _int64(value: int) -> int:
    """A uint64 from the wire as the server's long (StreamRevision/Position.ToInt64)."""
    return value - 2**64 if value > _I64_MAX else value


def _stream_name(identifier: shared_pb2.StreamIdentifier) -> str:
    return identifier.stream_name.decode("utf-8", "replace")


def _ms(settings: object, oneof: str) -> int:
    """message_timeout / checkpoint_after in milliseconds, from the ms or the ticks variant."""
    which = settings.WhichOneof(oneof)  # type: ignore[attr-defined]
    if which is None:
        return 0
    value = int(getattr(settings, which))
    # (int)TimeSpan.FromTicks(ticks).TotalMilliseconds truncates toward zero.
    return value if which.endswith("_ms") else int(value / 10_000)


def _uuid_text(value: shared_pb2.UUID) -> str:
    if value.WhichOneof("value") == "structured":
        s = value.structured
        number = ((s.most_significant_bits & _U64_MAX) << 64) | (
            s.least_significant_bits & _U64_MAX
        )
        return str(uuid.UUID(int=number))
    return str(uuid.UUID(value.string))


def _uuid_message(text: str, structured: bool) -> shared_pb2.UUID:
    if not structured:
        return shared_pb2.UUID(string=text)
    number = uuid.UUID(text).int
    msb, lsb = number >> 64, number & _U64_MAX
    return shared_pb2.UUID(
        structured=shared_pb2.UUID.Structured(
            most_significant_bits=_int64(msb), least_significant_bits=_int64(lsb)
        )
    )


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        result[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return result


def _username(metadata: dict[str, str]) -> str | None:
    header = metadata.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded).decode().partition(":")[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _subscription_stream(options: Any, context: grpc.ServicerContext) -> tuple[str, str]:
    """(which oneof, stream name) of a request's `stream_option`: `$all` or one stream."""
    which = options.WhichOneof("stream_option")
    if which == "all":
        return which, ALL
    if which == "stream_identifier":
        return which, _stream_name(options.stream_identifier)
    _handler_exception(context)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------ sources / filters
class _EventFilter:
    """A `$all` subscription filter (EventFilter.cs: StreamName/EventType, Regex/Prefixes)."""

    def __init__(self, by_stream: bool, regex: str | None, prefixes: tuple[str, ...]) -> None:
        self.by_stream = by_stream
        self.regex_text = regex
        self.regex = re.compile(regex) if regex else None
        self.prefixes = prefixes

    @classmethod
    def from_proto(cls, f: persistent_pb2.CreateReq.AllOptions.FilterOptions) -> _EventFilter:
        which = f.WhichOneof("filter")
        if which is None:
            raise ValueError("no filter expression")
        expression = getattr(f, which)
        if expression.regex:
            return cls(which == "stream_identifier", expression.regex, ())
        return cls(which == "stream_identifier", None, tuple(expression.prefix))

    def allows(self, record: Record) -> bool:
        if not visible_in_all(record):
            return False
        value = record.stream if self.by_stream else record.type
        if self.regex is not None:
            return self.regex.search(value) is not None  # .NET Regex.Match: a search
        return any(value.startswith(prefix) for prefix in self.prefixes)

    def to_dto(self) -> dict:
        # EventFilter.ParseToDto, as saved in the subscription configuration.
        return {
            "context": "streamid" if self.by_stream else "eventtype",
            "type": "regex" if self.regex_text else "prefix",
            "data": self.regex_text or ",".join(self.prefixes),
            "isAllStream": True,
        }

    @classmethod
    def from_dto(cls, dto: dict) -> _EventFilter:
        by_stream = dto.get("context") == "streamid"
        data = str(dto.get("data") or "")
        if dto.get("type") == "regex":
            return cls(by_stream, data, ())
        return cls(by_stream, None, tuple(p for p in data.split(",") if p))


@dataclass(frozen=True)
class _Source:
    """PS/PersistentSubscriptionSingleStreamEventSource.cs, ...AllStreamEventSource.cs."""

    stream: str  # "$all" for `$all`
    event_filter: _EventFilter | None = None

    @property
    def is_all(self) -> bool:
        return self.stream == ALL

    def fmt(self, position: Pos) -> str:
        if isinstance(position, tuple):
            return f"C:{position[0]}/P:{position[1]}"
        return str(position)

    def parse(self, text: str) -> Pos:
        if self.is_all:
            commit, prepare = text.split("/")
            return (int(commit.removeprefix("C:")), int(prepare.removeprefix("P:")))
        return int(text)

    def is_live(self, position: Pos) -> bool:
        return position == ((-1, -1) if self.is_all else -1)


@dataclass(frozen=True, slots=True)
class _Settings:
    resolve_links: bool = False
    extra_statistics: bool = False
    message_timeout_ms: int = 0
    max_retry_count: int = 0
    live_buffer_size: int = 0
    history_buffer_size: int = 0
    read_batch_size: int = 0
    checkpoint_after_ms: int = 0
    min_checkpoint_count: int = 0
    max_checkpoint_count: int = 0
    max_subscriber_count: int = 0
    consumer_strategy: str = "RoundRobin"

    @classmethod
    def from_request(cls, s: object, strategy: str) -> _Settings:
        return cls(
            resolve_links=s.resolve_links,  # type: ignore[attr-defined]
            extra_statistics=s.extra_statistics,  # type: ignore[attr-defined]
            message_timeout_ms=_ms(s, "message_timeout"),
            max_retry_count=s.max_retry_count,  # type: ignore[attr-defined]
            live_buffer_size=s.live_buffer_size,  # type: ignore[attr-defined]
            history_buffer_size=s.history_buffer_size,  # type: ignore[attr-defined]
            read_batch_size=s.read_batch_size,  # type: ignore[attr-defined]
            checkpoint_after_ms=_ms(s, "checkpoint_after"),
            min_checkpoint_count=s.min_checkpoint_count,  # type: ignore[attr-defined]
            max_checkpoint_count=s.max_checkpoint_count,  # type: ignore[attr-defined]
            max_subscriber_count=s.max_subscriber_count,  # type: ignore[attr-defined]
            consumer_strategy=strategy,
        )

    @property
    def checkpoint_after(self) -> float:
        # ToCheckPointAfterTimeout: 0 ms is TimeSpan.MaxValue (never checkpoint by time).
        return math.inf if self.checkpoint_after_ms == 0 else self.checkpoint_after_ms / 1000.0

    @property
    def reported_checkpoint_after_ms(self) -> int:
        # Stats report (int)TimeSpan.MaxValue.TotalMilliseconds, which is int.MinValue on x64.
        return _I32_MIN if self.checkpoint_after_ms == 0 else self.checkpoint_after_ms


def _config_entry(source: _Source, group: str, settings: _Settings, start: Pos) -> dict:
    """A PersistentSubscriptionEntry as Json.ToJsonBytes writes it (camelCase, no defaults)."""
    entry = {
        "stream": source.stream,
        "group": group,
        "filter": source.event_filter.to_dto() if source.event_filter else None,
        "resolveLinkTos": settings.resolve_links,
        "extraStatistics": settings.extra_statistics,
        "messageTimeout": settings.message_timeout_ms,
        "startFrom": -(2**63) if isinstance(start, tuple) else start,
        "startPosition": source.fmt(start),
        "liveBufferSize": settings.live_buffer_size,
        "historyBufferSize": settings.history_buffer_size,
        "maxRetryCount": settings.max_retry_count,
        "readBatchSize": settings.read_batch_size,
        "checkPointAfter": settings.checkpoint_after_ms,
        "minCheckPointCount": settings.min_checkpoint_count,
        "maxCheckPointCount": settings.max_checkpoint_count,
        "maxSubscriberCount": settings.max_subscriber_count,
        "namedConsumerStrategy": settings.consumer_strategy,
    }
    return {k: v for k, v in entry.items() if v is not None and v is not False and v != 0}


# ------------------------------------------------------------------------------ messages
@dataclass(slots=True)
class _Message:
    """An OutstandingMessage: a resolved event with its retry count and sequence number."""

    event_id: str  # OriginalEvent.EventId: the link's id when there is a link
    event: Record | None  # None for a link whose target is gone
    link: Record | None
    wire_position: int | None  # ResolvedEvent.OriginalPosition (None: no_position)
    position: Pos | None  # position in the subscription's source; None when replayed
    retry_count: int = 0
    replayed: bool = False  # replayed from the parked messages stream
    seq: int | None = None
    previous: Pos | None = None  # position of the message pushed before it
    expires: float = 0.0

    @property
    def original(self) -> Record:
        original = self.link or self.event
        assert original is not None
        return original


class _Client:
    """One Read call (PersistentSubscriptionClient): in-flight slots and an outbox."""

    def __init__(
        self,
        key: str,
        max_in_flight: int,
        username: str,
        connection_name: str,
        structured_ids: bool,
    ) -> None:
        self.key = key
        self.correlation_id = str(uuid.uuid4())
        self.max_in_flight = max_in_flight
        self.available = max_in_flight
        self.unconfirmed: dict[str, _Message] = {}
        self.username = username
        self.connection_name = connection_name
        self.structured_ids = structured_ids
        self.total_items = 0
        self.last_total_items = 0
        self.subscription: _Subscription | None = None
        self.on_confirmed: list = []  # callbacks (client, message), for Pinned bookkeeping
        self.statistics: RequestStatistics | None = None  # with the group's extra statistics
        self._cond = threading.Condition()
        self._outbox: deque[tuple[_Message, int]] = deque()
        self._dropped: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] | None = None

    @property
    def in_flight(self) -> int:
        return len(self.unconfirmed)

    def push(self, message: _Message) -> bool:
        if self.available <= 0:
            return False
        self.available -= 1
        self.total_items += 1
        if self.statistics is not None:
            self.statistics.start(message.event_id)
        with self._cond:
            self._outbox.append((message, message.retry_count))
            self._cond.notify_all()
        self.unconfirmed.setdefault(message.event_id, message)
        return True

    def confirm(self, event_ids: Iterable[str]) -> None:
        for event_id in event_ids:
            if self.statistics is not None:
                self.statistics.end(event_id)
            message = self.unconfirmed.pop(event_id, None)
            if message is None:
                continue
            self.available += 1
            for callback in self.on_confirmed:
                callback(self, message)

    def drop(self, error: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]) -> None:
        with self._cond:
            if self._dropped is None:
                self._dropped = error
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def take(
        self, timeout: float
    ) -> tuple[list[tuple[_Message, int]], tuple[grpc.StatusCode, str, tuple] | None]:
        with self._cond:
            if not self._outbox and self._dropped is None:
                self._cond.wait(timeout)
            items = list(self._outbox)
            self._outbox.clear()
            return items, self._dropped


# ---------------------------------------------------------------------------- strategies
class _RoundRobin:
    """PS/ConsumerStrategy/RoundRobinPersistentSubscriptionConsumerStrategy.cs."""

    name = "RoundRobin"

    def __init__(self) -> None:
        self.clients: deque[_Client] = deque()

    def added(self, client: _Client) -> None:
        self.clients.append(client)

    def removed(self, client: _Client) -> None:
        self.clients.remove(client)

    def push(self, message: _Message) -> int:
        for _ in range(len(self.clients)):
            client = self.clients.popleft()
            pushed = client.push(message)
            self.clients.append(client)
            if pushed:
                return _SENT
        return _FULL


class _DispatchToSingle(_RoundRobin):
    """Fill the first consumer, move on to the next only when it is full."""

    name = "DispatchToSingle"

    def push(self, message: _Message) -> int:
        for _ in range(len(self.clients)):
            if self.clients[0].push(message):
                return _SENT
            self.clients.rotate(-1)
        return _FULL


class _Node:
    def __init__(self, client: _Client) -> None:
        self.client = client
        self.connected = True
        self.assigned = 0


class _Pinned:
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

    def added(self, client: _Client) -> None:
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

    def removed(self, client: _Client) -> None:
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

    def _bucket(self, message: _Message) -> int:
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

    def _confirmed(self, client: _Client, message: _Message) -> None:
        bucket = self._bucket(message)
        node = self.buckets.get(bucket)
        if node is not None and node.client is client and self.in_flight.get(bucket, 0) > 0:
            self.in_flight[bucket] -= 1

    def push(self, message: _Message) -> int:
        connected = self._connected()
        if sum(n.client.max_in_flight - n.client.in_flight for n in connected) <= 0:
            return _FULL
        bucket = self._bucket(message)
        node = self.buckets.get(bucket)
        if node is None or not node.connected:
            node = min(connected, key=lambda n: n.assigned)
            self._assign(bucket, node)
            self.in_flight[bucket] = 0
        if not node.client.push(message):
            return _SKIPPED
        self.in_flight[bucket] = self.in_flight.get(bucket, 0) + 1
        return _SENT


def _strategy(name: str) -> _RoundRobin | _Pinned:
    if name == "DispatchToSingle":
        return _DispatchToSingle()
    if name in ("Pinned", "PinnedByCorrelation"):
        return _Pinned(by_correlation=name == "PinnedByCorrelation")
    return _RoundRobin()


# --------------------------------------------------------------------------- subscription
class _Subscription:
    """One subscription group (PS/PersistentSubscription.cs). Callers hold the service lock."""

    def __init__(
        self, store: Store, source: _Source, group: str, settings: _Settings, start_from: Pos
    ) -> None:
        if settings.read_batch_size >= settings.history_buffer_size:
            raise ValueError(_BATCH_TOO_BIG)
        self.store = store
        self.source = source
        self.group = group
        self.settings = settings
        self.start_from = start_from
        self.key = f"{source.stream}::{group}"
        self.checkpoint_stream = f"$persistentsubscription-{self.key}-checkpoint"
        self.parked_stream = f"$persistentsubscription-{self.key}-parked"
        self.strategy = _strategy(settings.consumer_strategy)
        self.clients: dict[str, _Client] = {}
        self.retry: list[_Message] = []
        self.buffer: deque[_Message] = deque()
        self.outstanding: dict[str, _Message] = {}
        self.live = False
        self.faulted = False
        self.next_seq = 0
        self.last_checkpointed_seq = -1
        self.last_known_seq = -1
        self.last_known_message: Pos | None = None
        self.last_checkpoint_time = -math.inf
        self.stats_checkpoint: Pos | None = None
        self.stats_known: Pos | None = None
        self.total_items = 0
        self.live_count = 0
        self.parked_last = -1
        self.parked_truncate_before = -1
        self.initial: Pos | None = None  # the loaded checkpoint: read strictly after it
        self._clock = time.monotonic()
        self._last_stats_time = 0.0
        self._last_stats_items = 0
        self._skip_start: Pos | None = None
        self._skip_count = 0
        self.cursor = 0
        self._load_state()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        checkpoint = self._read_checkpoint()
        if checkpoint is None:
            if self.source.is_live(self.start_from):
                self.live = True
                self.cursor = self._source_end()
            else:
                self.cursor = self._cursor_of(self.start_from)
            return
        # OnCheckpointLoaded: resume after the checkpoint, as if it had been acknowledged.
        self.cursor = self._cursor_of(checkpoint)
        self.initial = checkpoint
        self.next_seq = 1
        self.last_checkpointed_seq = 0
        self.last_known_seq = 0
        self.last_known_message = checkpoint
        self.stats_checkpoint = checkpoint
        self._load_parked_stats()

    def _cursor_of(self, position: Pos) -> int:
        return position[0] if isinstance(position, tuple) else position

    def _source_end(self) -> int:
        if self.source.is_all:
            return self.store.head_position
        return self.store.stream_state(self.source.stream)[0] + 1

    def _read_checkpoint(self) -> Pos | None:
        # PersistentSubscriptionCheckpointReader: the last event of the checkpoint stream.
        try:
            records = self.store.visible_records(self.checkpoint_stream)
        except (StreamNotFound, StreamDeleted):
            return None
        if not records:
            return None
        last = records[-1]
        if last.type not in ("SubscriptionCheckpoint", CHECKPOINT_EVENT_TYPE):
            return None
        try:
            return self.source.parse(json.loads(last.data))
        except (ValueError, TypeError, AttributeError):
            return None

    def _load_parked_stats(self) -> None:
        # PersistentSubscriptionMessageParker.BeginLoadStats (only run after a checkpoint).
        try:
            records = self.store.visible_records(self.parked_stream)
        except (StreamNotFound, StreamDeleted):
            return
        if not records:  # everything was replayed ($tb past the end)
            return
        self.parked_last = records[-1].revision
        self.parked_truncate_before = records[0].revision

    @property
    def parked_count(self) -> int:
        if self.parked_last == -1:
            return 0
        if self.parked_truncate_before == -1:
            return self.parked_last + 1
        return self.parked_last - self.parked_truncate_before + 1

    # ------------------------------------------------------------------ reading
    def fill(self) -> None:
        """Read new events of the source into the buffer while there is room."""
        if self.faulted:
            return
        room = self.settings.history_buffer_size - len(self.retry) - len(self.buffer)
        if self.source.is_all:
            self._fill_all(room)
        else:
            self._fill_stream(room)

    def _fill_stream(self, room: int) -> None:
        name = self.source.stream
        last, tombstoned = self.store.stream_state(name)
        if tombstoned:
            self._fault(f"Event stream '{name}' is deleted.")
            return
        if last < self.cursor:
            self.live = True
            return
        if room <= 0:
            self.live = False
            return
        try:
            records = self.store.visible_records(name)
        except StreamNotFound:
            self.live = True
            return
        except StreamDeleted:
            self._fault(f"Event stream '{name}' is deleted.")
            return
        start = bisect.bisect_left(records, self.cursor, key=lambda r: r.revision)
        chunk = records[start : start + room]
        was_live = self.live
        for record in chunk:
            self.cursor = record.revision + 1
            if self.initial is not None and record.revision <= self.initial:  # type: ignore[operator]
                continue
            # Read from history too, an event has its position: ResolvedEvent.CalculatePosition
            # takes it from the record itself, every record being self-committed (IsCommitted
            # prepares, EventStoreDB >= 20.6); kurrentdbclient refuses a no_position event.
            self._add(record, record.revision, record.position, was_live)
        self.live = start + len(chunk) >= len(records)

    def _fill_all(self, room: int) -> None:
        index = self.store.all_index_from(self.cursor)
        if room <= 0:
            self.live = self.store.record_at(index) is None
            return
        was_live = self.live
        event_filter = self.source.event_filter
        # ReadAllForwardFiltered considers max(batch, MaxCheckPointCount) events per read.
        window = 1 if was_live else max(self._batch_size(), self.settings.max_checkpoint_count, 1)
        added = 0
        while added < room:
            page = self.store.log_slice(index, index + _PAGE)
            if not page:
                break
            for record in page:
                index += 1
                self.cursor = record.position + 1
                if not visible_in_all(record):
                    continue
                position = (record.position, record.position)
                if self.initial is not None and position <= self.initial:  # type: ignore[operator]
                    continue
                if event_filter is not None and not event_filter.allows(record):
                    self._filtered_out(position, window)
                    continue
                self._skip_start, self._skip_count = None, 0
                self._add(record, position, record.position, was_live)
                added += 1
                if added >= room:
                    break
        self.live = self.store.record_at(index) is None

    def _batch_size(self) -> int:
        batch = self.settings.read_batch_size or 20
        return min(batch, _MAX_PULL_BATCH)

    def _filtered_out(self, position: Pos, window: int) -> None:
        if self.buffer or self.retry:
            self._skip_start, self._skip_count = None, 0
            return
        if self._skip_count == 0:
            self._skip_start = position
        self._skip_count += 1
        if self._skip_count >= window:
            start, count = self._skip_start, self._skip_count
            self._skip_start, self._skip_count = None, 0
            assert start is not None
            self._handle_skipped(start, count)

    def _handle_skipped(self, position: Pos, count: int) -> None:
        # PersistentSubscription.HandleSkippedEvents
        self.last_known_message = position
        self.next_seq += count
        self.last_known_seq = self.next_seq - 1
        self.try_mark_checkpoint(False)

    def _add(self, record: Record, position: Pos, wire: int | None, live: bool) -> None:
        event: Record | None = record
        link = None
        if self.settings.resolve_links and record.type == LINK_EVENT_TYPE:
            link, event = record, self.store.resolve_link(record.data)
        self.buffer.append(_Message(record.event_id, event, link, wire, position))
        if self.stats_known is None or position > self.stats_known:  # type: ignore[operator]
            self.stats_known = position
        if live:
            self.live_count = min(self.live_count + 1, self.settings.live_buffer_size)

    def _fault(self, reason: str) -> None:
        # HandleReadError: a non-recoverable read error drops every consumer.
        if not self.faulted:
            log.error("persistent subscription %s faulted: %s", self.key, reason)
        self.faulted = True
        self.shutdown()

    # ------------------------------------------------------------------ delivery
    def push(self) -> None:
        """TryPushingMessagesToClients: retry buffer first, then the read buffer."""
        if not self.clients:
            return
        for queue in (self.retry, self.buffer):
            i = 0
            while i < len(queue):
                message = queue[i]
                candidate, new_seq = message, False
                if not message.replayed and message.seq is None:
                    candidate = replace(
                        message, seq=self.next_seq, previous=self.last_known_message
                    )
                    new_seq = True
                result = self.strategy.push(candidate)
                if result == _SENT:
                    del queue[i]
                    if new_seq:
                        self.next_seq += 1
                    self._begin_processing(candidate)
                elif result == _SKIPPED:
                    i += 1
                else:
                    return

    def _begin_processing(self, message: _Message) -> None:
        # MarkBeginProcessing
        self.total_items += 1
        if message.seq is not None and message.seq > self.last_known_seq:
            self.last_known_seq = message.seq
            self.last_known_message = message.position
        message.expires = time.monotonic() + self.settings.message_timeout_ms / 1000.0
        if message.event_id in self.outstanding:
            log.warning("%s: skipping duplicate event id %s", self.key, message.event_id)
            return
        self.outstanding[message.event_id] = message

    def _forget(self, event_id: str) -> None:
        self.outstanding.pop(event_id, None)
        for client in self.clients.values():
            client.confirm((event_id,))

    def _retry(self, message: _Message) -> None:
        """RetryMessage: back into the retry buffer, in source order, one retry more."""
        self._forget(message.event_id)
        again = replace(message, retry_count=message.retry_count + 1)
        if not again.replayed:
            for i, other in enumerate(self.retry):
                if other.position is not None and again.position < other.position:  # type: ignore[operator]
                    self.retry.insert(i, again)
                    return
        self.retry.append(again)

    def _retried_too_often(self, message: _Message) -> bool:
        # ActionTakenForRetriedMessage
        if message.retry_count < self.settings.max_retry_count:
            return False
        self._park(message, f"Reached retry count of {self.settings.max_retry_count}")
        return True

    def _park(self, message: _Message, reason: str) -> None:
        """PersistentSubscriptionMessageParker.BeginParkMessage: a link in the parked stream."""
        original = message.original
        if message.event is not None:
            data = f"{message.event.revision}@{message.event.stream}".encode()
        else:  # an unresolved link: keep the link's own data
            data = original.data
        meta: dict = {"added": datetime.now().astimezone().isoformat(), "reason": reason}
        if original.revision:
            meta["subscriptionEventNumber"] = original.revision
        event = ProposedEvent(
            str(uuid.uuid4()),
            LINK_EVENT_TYPE,
            OCTET_STREAM,
            data,
            json.dumps(meta, indent=2).encode(),
        )
        try:
            result = self.store.append(self.parked_stream, ANY, [event])
            self.parked_last = result.last_revision
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to park message %s: %s", self.key, message.event_id, e)
        # The server completes the park asynchronously; callers push once they are done.
        self._forget(message.event_id)

    def ack(self, event_ids: list[str]) -> None:
        # AcknowledgeMessagesProcessed
        for client in list(self.clients.values()):
            client.confirm(event_ids)
        for event_id in event_ids:
            self.outstanding.pop(event_id, None)
        self.try_mark_checkpoint(False)
        self.fill()
        self.push()

    def nack(self, event_ids: list[str], action: int, reason: str) -> None:
        # NotAcknowledgeMessagesProcessed / HandleNackedMessage
        for event_id in event_ids:
            message = self.outstanding.get(event_id)
            if action in (_NACK_RETRY, _NACK_UNKNOWN):
                if message is not None and not self._retried_too_often(message):
                    self._retry(message)
            elif action == _NACK_PARK:
                if message is not None:
                    self._park(message, "Client explicitly NAK'ed message.\n" + reason)
            elif action == _NACK_STOP:
                pass  # StopSubscription() is a no-op in the server
            else:
                self.outstanding.pop(event_id, None)
        for client in list(self.clients.values()):
            client.confirm(event_ids)
        for event_id in event_ids:
            self.outstanding.pop(event_id, None)
        self.try_mark_checkpoint(False)
        self.fill()
        self.push()

    def tick(self, now: float) -> None:
        """NotifyClockTick: time out messages, push, checkpoint by time, read more."""
        expired = sorted(
            (m for m in self.outstanding.values() if m.expires <= now), key=lambda m: m.expires
        )
        for message in expired:
            if self.outstanding.get(message.event_id) is not message:
                continue
            del self.outstanding[message.event_id]
            if not self._retried_too_often(message):
                self._retry(message)
        self.push()
        self.try_mark_checkpoint(True)
        self.fill()
        self.push()

    # ------------------------------------------------------------------ checkpoints
    def try_mark_checkpoint(self, is_time_check: bool) -> None:
        lowest: _Message | None = None
        for message in (*self.outstanding.values(), *self.retry):
            if message.replayed or message.seq is None:
                continue
            if lowest is None or message.seq < lowest.seq:  # type: ignore[operator]
                lowest = message
        if lowest is not None:
            # Everything before the oldest unacknowledged message is done.
            sequence = lowest.seq - 1  # type: ignore[operator]
            position = lowest.previous
            if position is None:
                return
        else:
            sequence = self.last_known_seq
            position = self.last_known_message
        if sequence == -1 or position is None:
            return
        difference = sequence - self.last_checkpointed_seq
        now = time.monotonic()
        elapsed = now - self.last_checkpoint_time
        settings = self.settings
        if elapsed < settings.checkpoint_after and difference < settings.max_checkpoint_count:
            return
        if (
            difference >= settings.min_checkpoint_count and is_time_check
        ) or difference >= settings.max_checkpoint_count:
            self.last_checkpoint_time = now
            unchanged = sequence == self.last_checkpointed_seq and position == self.stats_checkpoint
            self.last_checkpointed_seq = sequence
            if not unchanged:  # the server would write the same checkpoint again
                self._write_checkpoint(position)
            self.stats_checkpoint = position

    def _write_checkpoint(self, position: Pos) -> None:
        # PersistentSubscriptionCheckpointWriter.PublishCheckpoint: the position as a JSON string.
        data = json.dumps(self.source.fmt(position)).encode()
        event = ProposedEvent(str(uuid.uuid4()), CHECKPOINT_EVENT_TYPE, JSON, data)
        try:
            self.store.append(self.checkpoint_stream, ANY, [event])
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to write checkpoint: %s", self.key, e)

    # ------------------------------------------------------------------ parked messages
    def replay_parked(self, stop_at: int | None) -> None:
        """RetryParkedMessages: parked messages go to the end of the retry buffer, then the
        parked stream is truncated ($tb) past what was replayed."""
        try:
            records = self.store.visible_records(self.parked_stream)
        except (StreamNotFound, StreamDeleted):
            return
        if not records:
            return
        end = records[-1].revision
        stop = min(stop_at, end + 1) if stop_at is not None else end + 1
        for record in records:
            if record.revision >= stop:
                break
            target = (
                self.store.resolve_link(record.data) if record.type == LINK_EVENT_TYPE else record
            )
            if target is None:
                continue
            # Read from a stream: no position; the parked link is the original event.
            self.retry.append(_Message(record.event_id, target, record, None, None, replayed=True))
        acl = {
            "$r": "$admins",
            "$w": "$admins",
            "$d": "$admins",
            "$mr": "$admins",
            "$mw": "$admins",
        }
        try:
            self.store.set_metadata(self.parked_stream, {"$tb": stop, "$acl": acl})
            self.parked_truncate_before = stop
        except (StreamDeleted, WrongExpectedVersion) as e:
            log.error("%s: unable to truncate parked messages: %s", self.key, e)
        self.push()

    def delete_streams(self) -> None:
        # Delete(): soft-delete the checkpoint and parked message streams.
        for stream in (self.checkpoint_stream, self.parked_stream):
            with contextlib.suppress(StreamDeleted, WrongExpectedVersion):
                self.store.delete(stream, ANY)

    # ------------------------------------------------------------------ consumers
    @property
    def max_clients_reached(self) -> bool:
        limit = self.settings.max_subscriber_count
        return limit != 0 and len(self.clients) >= limit

    def connect(self, client: _Client) -> None:
        if self.settings.extra_statistics:  # PersistentSubscriptionClient: RequestStatistics
            client.statistics = RequestStatistics()
        self.clients[client.correlation_id] = client
        client.subscription = self
        self.strategy.added(client)
        if self.faulted:
            self.remove(client, drop=True, retry=False)
            return
        self.push()

    def remove(self, client: _Client, *, drop: bool, retry: bool = True) -> None:
        if self.clients.pop(client.correlation_id, None) is None:
            return
        self.strategy.removed(client)
        if drop:
            client.drop(_dropped(self.source.stream, self.group))
        if not retry:
            return
        # RemoveClientByCorrelationId: its unacknowledged messages are retried.
        lost = sorted(client.unconfirmed.values(), key=lambda m: m.original.revision)
        client.unconfirmed.clear()
        for message in lost:
            self._retry(message)
        self.push()

    def shutdown(self) -> None:
        for client in list(self.clients.values()):
            self.remove(client, drop=True, retry=False)

    # ------------------------------------------------------------------ statistics
    def status(self) -> str:
        # PersistentSubscriptionState flags, formatted as .NET does ("Behind", "Live", ...).
        names = ["Live" if self.live else "Behind"]
        return ", ".join(names)

    def info(self) -> persistent_pb2.SubscriptionInfo:
        """PersistentSubscriptionStats.GetStatistics, as Grpc/...Info.cs converts it."""
        now = time.monotonic() - self._clock
        elapsed = now - self._last_stats_time
        items = self.total_items - self._last_stats_items
        self._last_stats_time, self._last_stats_items = now, self.total_items

        def per_second(count: int) -> int:
            return int(count / elapsed) if elapsed > 0 else 0

        connections = []
        for client in self.clients.values():
            since = client.total_items - client.last_total_items
            client.last_total_items = client.total_items
            connections.append(
                persistent_pb2.SubscriptionInfo.ConnectionInfo(
                    **{"from": ""},  # gRPC consumers connect with From = string.Empty
                    username=client.username,
                    average_items_per_second=per_second(since),
                    total_items=client.total_items,
                    count_since_last_measurement=since,
                    available_slots=client.available,
                    in_flight_messages=client.in_flight,
                    connection_name=client.connection_name,
                    observed_measurements=[
                        persistent_pb2.SubscriptionInfo.Measurement(key=key, value=value)
                        for key, value in (
                            client.statistics.measurements() if client.statistics else ()
                        )
                    ],
                )
            )
        s = self.settings
        return persistent_pb2.SubscriptionInfo(
            event_source=self.source.stream,
            group_name=self.group,
            status=self.status(),
            connections=connections,
            average_per_second=per_second(items),
            total_items=self.total_items,
            count_since_last_measurement=items,
            last_checkpointed_event_position=(
                self.source.fmt(self.stats_checkpoint) if self.stats_checkpoint is not None else ""
            ),
            last_known_event_position=(
                self.source.fmt(self.stats_known) if self.stats_known is not None else ""
            ),
            resolve_link_tos=s.resolve_links,
            start_from=self.source.fmt(self.start_from),
            message_timeout_milliseconds=s.message_timeout_ms,
            extra_statistics=s.extra_statistics,
            max_retry_count=s.max_retry_count,
            live_buffer_size=s.live_buffer_size,
            buffer_size=s.history_buffer_size,
            read_batch_size=s.read_batch_size,
            check_point_after_milliseconds=s.reported_checkpoint_after_ms,
            min_check_point_count=s.min_checkpoint_count,
            max_check_point_count=s.max_checkpoint_count,
            read_buffer_count=len(self.buffer),
            live_buffer_count=self.live_count,
            retry_buffer_count=len(self.retry),
            total_in_flight_messages=sum(c.in_flight for c in self.clients.values()),
            outstanding_messages_count=len(self.outstanding),
            named_consumer_strategy=self.strategy.name,
            max_subscriber_count=s.max_subscriber_count,
            parked_message_count=self.parked_count,
        )


# ------------------------------------------------------------------------------- wire
def _recorded(
    record: Record, position: int | None, structured: bool
) -> persistent_pb2.ReadResp.ReadEvent.RecordedEvent:
    # Both the event and its link carry the original (link) position; without one, the
    # server sends Position.FromInt64(-1, -1) = ulong.MaxValue (Grpc/...Read.cs).
    wire = _U64_MAX if position is None else position
    return persistent_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=_uuid_message(record.event_id, structured),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream.encode()),
        stream_revision=record.revision,
        prepare_position=wire,
        commit_position=wire,
        metadata={
            "type": record.type,
            "created": str(record.created),
            # The server only keeps an isJson flag.
            "content-type": JSON if record.content_type == JSON else OCTET_STREAM,
        },
        custom_metadata=record.metadata,
        data=record.data,
    )


def _read_resp(message: _Message, retry_count: int, structured: bool) -> persistent_pb2.ReadResp:
    read_event = persistent_pb2.ReadResp.ReadEvent(retry_count=retry_count)
    if message.event is not None:
        read_event.event.CopyFrom(_recorded(message.event, message.wire_position, structured))
    if message.link is not None:
        read_event.link.CopyFrom(_recorded(message.link, message.wire_position, structured))
    if message.wire_position is None:
        read_event.no_position.CopyFrom(shared_pb2.Empty())
    else:
        read_event.commit_position = message.wire_position
    return persistent_pb2.ReadResp(event=read_event)


# ---------------------------------------------------------------------------------- service
class PersistentSubscriptionsService(persistent_pb2_grpc.PersistentSubscriptionsServicer):
    tick_seconds = 0.1  # the server's timer ticks every 1 s

    def __init__(self, store: Store, guard: Guard) -> None:
        self.store = store
        self.guard = guard
        self._lock = threading.RLock()
        self._subscriptions: dict[str, _Subscription] = {}
        # Event source -> its groups; a source stays listed after its last group is deleted,
        # until a restart (PersistentSubscriptionService._subscriptionTopics).
        self._topics: dict[str, list[_Subscription]] = {}
        self._entries: list[dict] = []
        self._closed = threading.Event()
        self._wakeup = threading.Event()  # set when groups are added, and on close
        with self._lock:
            self._load_configuration()
        self._thread = threading.Thread(target=self._run, name="esdb-emu-persistent", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wakeup.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._thread.join(timeout=5)
        with self._lock:
            for subscription in self._subscriptions.values():
                subscription.shutdown()

    def _run(self) -> None:
        """Pull new events into every group and run the timer (timeouts, checkpoints)."""
        next_tick = time.monotonic() + self.tick_seconds
        seen = -1
        while not self._closed.is_set():
            with self._lock:
                idle = not self._subscriptions
            if idle:
                # Nothing to deliver: do not wake up on every append (benchmarks append a lot).
                self._wakeup.wait()
                self._wakeup.clear()
                seen = -1
                continue
            with self.store.changed:
                if len(self.store) == seen:
                    self.store.changed.wait(max(0.0, next_tick - time.monotonic()))
                seen = len(self.store)
            if self._closed.is_set():
                return
            try:
                with self._lock:
                    subscriptions = list(self._subscriptions.values())
                    for subscription in subscriptions:
                        subscription.fill()
                        subscription.push()
                    now = time.monotonic()
                    if now >= next_tick:
                        next_tick = now + self.tick_seconds
                        for subscription in subscriptions:
                            subscription.tick(now)
            except Exception:  # keep the subsystem running, like the server's queue
                log.exception("persistent subscriptions: error while delivering")

    # ------------------------------------------------------------------ configuration
    def _load_configuration(self) -> None:
        """LoadConfiguration: rebuild the groups from the last `$PersistentConfig` event."""
        self._subscriptions.clear()
        self._topics.clear()
        self._entries = []
        try:
            records = self.store.visible_records(CONFIG_STREAM)
        except (StreamNotFound, StreamDeleted):
            return
        if not records:
            return
        try:
            config = json.loads(records[-1].data)
        except (ValueError, UnicodeDecodeError):
            log.error("invalid persistent subscription configuration in %s", CONFIG_STREAM)
            return
        for entry in config.get("entries") or ():
            try:
                subscription = self._from_entry(entry)
            except (KeyError, ValueError, TypeError, re.error) as e:
                log.error("ignoring persistent subscription entry %r: %s", entry, e)
                continue
            if subscription.key in self._subscriptions:
                log.warning("duplicate persistent subscription %s ignored", subscription.key)
                continue
            self._add(subscription)
            self._entries.append(entry)

    def _from_entry(self, entry: dict) -> _Subscription:
        strategy = entry.get("namedConsumerStrategy") or (
            "RoundRobin" if entry.get("preferRoundRobin") else "DispatchToSingle"
        )
        if strategy not in STRATEGIES:
            raise ValueError(f"invalid consumer strategy {strategy!r}")
        stream = entry["stream"]
        event_filter = None
        if stream == ALL and entry.get("filter"):
            event_filter = _EventFilter.from_dto(entry["filter"])
        source = _Source(stream, event_filter)
        start = source.parse(entry.get("startPosition") or str(entry.get("startFrom", 0)))
        settings = _Settings(
            resolve_links=bool(entry.get("resolveLinkTos", False)),
            extra_statistics=bool(entry.get("extraStatistics", False)),
            message_timeout_ms=int(entry.get("messageTimeout", 0)),
            max_retry_count=int(entry.get("maxRetryCount", 0)),
            live_buffer_size=int(entry.get("liveBufferSize", 0)),
            history_buffer_size=int(entry.get("historyBufferSize", 0)),
            read_batch_size=int(entry.get("readBatchSize", 0)),
            checkpoint_after_ms=int(entry.get("checkPointAfter", 0)),
            min_checkpoint_count=int(entry.get("minCheckPointCount", 0)),
            max_checkpoint_count=int(entry.get("maxCheckPointCount", 0)),
            max_subscriber_count=int(entry.get("maxSubscriberCount", 0)),
            consumer_strategy=strategy,
        )
        return _Subscription(self.store, source, entry["group"], settings, start)

    def _save_configuration(self, user: str | None) -> None:
        """SaveConfiguration: the whole configuration as one event, `$maxCount` 2."""
        if self.store.stream_metadata(CONFIG_STREAM).get("$maxCount") is None:
            self.store.set_metadata(CONFIG_STREAM, {"$maxCount": 2})
        config: dict = {
            "version": "2",
            "updated": datetime.now().astimezone().isoformat(),
            "updatedBy": user,
            "entries": self._entries,
        }
        config = {k: v for k, v in config.items() if v is not None}
        data = json.dumps(config, indent=2).encode()
        event = ProposedEvent(str(uuid.uuid4()), CONFIG_EVENT_TYPE, JSON, data)
        self.store.append(CONFIG_STREAM, ANY, [event])

    def _entry_index(self, stream: str, group: str) -> int:
        for i in range(len(self._entries) - 1, -1, -1):
            if self._entries[i].get("stream") == stream and self._entries[i].get("group") == group:
                return i
        return -1

    def _add(self, subscription: _Subscription) -> None:
        self._subscriptions[subscription.key] = subscription
        self._topics.setdefault(subscription.source.stream, []).append(subscription)
        self._wakeup.set()

    # ------------------------------------------------------------------ request parsing
    def _stream_and_start(self, options: object, context: grpc.ServicerContext) -> tuple[str, int]:
        """Create/Update to a stream: the stream and the start revision (-1 = end)."""
        if options.WhichOneof("stream_option") == "stream":  # type: ignore[attr-defined]
            stream_options = options.stream  # type: ignore[attr-defined]
            stream = _stream_name(stream_options.stream_identifier)
            which = stream_options.WhichOneof("revision_option")
            if which == "revision":
                return stream, _int64(stream_options.revision)
            if which == "start":
                return stream, 0
            if which == "end":
                return stream, -1
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"'None' is not a valid {type(stream_options).__name__}+RevisionOptionOneofCase",
            )
        # The deprecated form: stream_identifier and settings.revision.
        stream = _stream_name(options.stream_identifier)  # type: ignore[attr-defined]
        return stream, _int64(options.settings.revision)  # type: ignore[attr-defined]

    def _all_start(
        self, all_options: object, context: grpc.ServicerContext, create: bool
    ) -> tuple[int, int]:
        which = all_options.WhichOneof("all_option")  # type: ignore[attr-defined]
        if which == "start":
            return (0, 0)
        if which == "end":
            return (-1, -1)
        if which == "position":
            p = all_options.position  # type: ignore[attr-defined]
            commit, prepare = p.commit_position, p.prepare_position
            # Transport.Common.Position's constructor throws for these (an unhandled exception).
            if commit < prepare or any(v > _I64_MAX and v != _U64_MAX for v in (commit, prepare)):
                _handler_exception(context)
            if commit == prepare == _U64_MAX:
                return (-1, -1)
            return (_int64(commit), _int64(prepare))
        if create:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "'None' is not a valid AllOptions+AllOptionOneofCase",
            )
        _handler_exception(context)

    def _check_stream(self, context: grpc.ServicerContext, stream: str, group: str) -> None:
        # Handle(...ToStream): these are answered with Fail.
        if not stream:
            _fail(context, stream, group, "Bad stream name.")
        if stream == ALL:
            _fail(
                context,
                stream,
                group,
                "Persistent subscriptions to $all are only supported over gRPC through gRPC "
                "clients",
            )

    def _validate_start(self, source: _Source, start: Pos) -> str | None:
        """PersistentSubscriptionService.ValidateStartFrom."""
        if not isinstance(start, tuple):
            if start < -1:
                return (
                    "Invalid Start From position: event number must be greater than or equal to -1."
                )
            return None
        commit, prepare = start
        if prepare > commit:
            return (
                "Invalid Start From position: prepare position must be less than or equal to "
                "the commit position."
            )
        # ReadIndex.LastIndexedPosition: the position of the last record written.
        if commit > self.store.last_position:
            return (
                "Invalid Start From position: commit position must be less than or equal to "
                "the last commit position in the transaction file."
            )
        if (prepare <= -1 or commit <= -1) and not (prepare == -1 and commit == -1):
            return (
                "Invalid Start From position: prepare and commit positions must be greater "
                "than or equal to 0 or both equal to -1."
            )
        return None

    # ------------------------------------------------------------------ Create
    def Create(
        self, request: persistent_pb2.CreateReq, context: grpc.ServicerContext
    ) -> persistent_pb2.CreateResp:
        self.guard("Create", context)
        options = request.options
        s = options.settings
        # Grpc/...Create.cs: the string field, or the deprecated enum's name when it is empty.
        strategy = s.consumer_strategy or _NAMED_STRATEGIES.get(
            s.named_consumer_strategy, str(s.named_consumer_strategy)
        )
        group = options.group_name
        if options.WhichOneof("stream_option") == "all":
            start: Pos = self._all_start(options.all, context, create=True)
            event_filter = None
            if options.all.WhichOneof("filter_option") == "filter":
                try:
                    event_filter = _EventFilter.from_proto(options.all.filter)
                except ValueError:
                    _abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "'None' is not a valid FilterOptions+FilterOneofCase",
                    )
                except re.error:
                    _handler_exception(context)
            source = _Source(ALL, event_filter)
        else:
            stream, start = self._stream_and_start(options, context)
            source = _Source(stream)
        settings = _Settings.from_request(s, strategy)
        user = _username(_metadata(context))
        with self._lock:
            if not source.is_all:
                self._check_stream(context, source.stream, group)
            if strategy not in STRATEGIES:
                _fail(
                    context, source.stream, group, f"Consumer strategy {strategy} does not exist."
                )
            error = self._validate_start(source, start)
            if error:
                _fail(context, source.stream, group, error)
            if f"{source.stream}::{group}" in self._subscriptions:
                _exists(context, source.stream, group)
            try:
                subscription = _Subscription(self.store, source, group, settings, start)
            except ValueError as e:
                _fail(context, source.stream, group, str(e))
            self._add(subscription)
            self._entries.append(_config_entry(source, group, settings, start))
            self._save_configuration(user)
            subscription.fill()
        return persistent_pb2.CreateResp()

    # ------------------------------------------------------------------ Update
    def Update(
        self, request: persistent_pb2.UpdateReq, context: grpc.ServicerContext
    ) -> persistent_pb2.UpdateResp:
        self.guard("Update", context)
        options = request.options
        s = options.settings
        strategy = _NAMED_STRATEGIES.get(s.named_consumer_strategy, str(s.named_consumer_strategy))
        group = options.group_name
        is_all = options.WhichOneof("stream_option") == "all"
        if is_all:
            stream, start = ALL, self._all_start(options.all, context, create=False)
        else:
            stream, start = self._stream_and_start(options, context)
        settings = _Settings.from_request(s, strategy)
        user = _username(_metadata(context))
        with self._lock:
            if not is_all:
                self._check_stream(context, stream, group)
            old = self._subscriptions.get(f"{stream}::{group}")
            if old is None:
                _not_found(context, stream, group)
            if strategy not in STRATEGIES:
                _fail(context, stream, group, f"Consumer strategy {strategy} does not exist.")
            # A `$all` group keeps its filter (UpdateReq has none).
            source = old.source if is_all else _Source(stream)
            error = self._validate_start(source, start)
            if error:
                _fail(context, stream, group, error)
            try:
                subscription = _Subscription(self.store, source, group, settings, start)
            except ValueError as e:
                _fail(context, stream, group, str(e))
            # UpdateSubscription: the old group drops its consumers; the new one resumes from
            # the last checkpoint.
            old.shutdown()
            self._subscriptions[subscription.key] = subscription
            topic = self._topics[stream]
            topic[topic.index(old)] = subscription
            entry = _config_entry(source, group, settings, start)
            index = self._entry_index(stream, group)
            if index < 0:
                self._entries.append(entry)
            else:
                self._entries[index] = entry
            self._save_configuration(user)
            subscription.fill()
        return persistent_pb2.UpdateResp()

    # ------------------------------------------------------------------ Delete
    def Delete(
        self, request: persistent_pb2.DeleteReq, context: grpc.ServicerContext
    ) -> persistent_pb2.DeleteResp:
        self.guard("Delete", context)
        options = request.options
        which, stream = _subscription_stream(options, context)
        group = options.group_name
        user = _username(_metadata(context))
        with self._lock:
            if which != "all":
                self._check_stream(context, stream, group)
            subscription = self._subscriptions.get(f"{stream}::{group}")
            if subscription is None:
                _not_found(context, stream, group)
            del self._subscriptions[subscription.key]
            self._topics[stream].remove(subscription)
            subscription.shutdown()
            index = self._entry_index(stream, group)
            if index >= 0:
                del self._entries[index]
            subscription.delete_streams()
            self._save_configuration(user)
        return persistent_pb2.DeleteResp()

    # ------------------------------------------------------------------ GetInfo / List
    def GetInfo(
        self, request: persistent_pb2.GetInfoReq, context: grpc.ServicerContext
    ) -> persistent_pb2.GetInfoResp:
        self.guard("GetInfo", context)
        options = request.options
        _, stream = _subscription_stream(options, context)
        with self._lock:
            for subscription in self._topics.get(stream, ()):
                if subscription.group == options.group_name:
                    return persistent_pb2.GetInfoResp(subscription_info=subscription.info())
        _not_found(context, stream, options.group_name)

    def List(
        self, request: persistent_pb2.ListReq, context: grpc.ServicerContext
    ) -> persistent_pb2.ListResp:
        self.guard("List", context)
        options = request.options
        which = options.WhichOneof("list_option")
        with self._lock:
            if which == "list_all_subscriptions":
                # GetAllPersistentSubscriptionStats: topics in sorted order.
                groups = [s for topic in sorted(self._topics) for s in self._topics[topic]]
            elif which == "list_for_stream":
                stream_option = options.list_for_stream
                kind = stream_option.WhichOneof("stream_option")
                if kind == "all":
                    stream = ALL
                elif kind == "stream":
                    stream = _stream_name(stream_option.stream)
                else:
                    _handler_exception(context)
                if stream not in self._topics:
                    _not_found(context, stream, "")
                groups = list(self._topics[stream])
            else:
                _handler_exception(context)
            return persistent_pb2.ListResp(subscriptions=[s.info() for s in groups])

    # ------------------------------------------------------------------ ReplayParked
    def ReplayParked(
        self, request: persistent_pb2.ReplayParkedReq, context: grpc.ServicerContext
    ) -> persistent_pb2.ReplayParkedResp:
        self.guard("ReplayParked", context)
        options = request.options
        _, stream = _subscription_stream(options, context)
        stop_option = options.WhichOneof("stop_at_option")
        if stop_option is None:
            _handler_exception(context)
        stop_at = options.stop_at if stop_option == "stop_at" else None
        group = options.group_name
        if stop_at is not None and stop_at < 0:
            _fail(
                context,
                stream,
                group,
                "Cannot stop replaying parked message at a negative version.",
            )
        with self._lock:
            subscription = self._subscriptions.get(f"{stream}::{group}")
            if subscription is None:
                _not_found(context, stream, group)
            subscription.replay_parked(stop_at)
        return persistent_pb2.ReplayParkedResp()

    # ------------------------------------------------------------------ RestartSubsystem
    def RestartSubsystem(
        self, request: shared_pb2.Empty, context: grpc.ServicerContext
    ) -> shared_pb2.Empty:
        self.guard("RestartSubsystem", context)
        with self._lock:
            # Stop, shut every group down (consumers are dropped), load the configuration again;
            # groups resume from their checkpoints.
            for subscription in self._subscriptions.values():
                subscription.shutdown()
            self._load_configuration()
            for subscription in self._subscriptions.values():
                subscription.fill()
        return shared_pb2.Empty()

    # ------------------------------------------------------------------ Read
    def Read(
        self, request_iterator: Iterator[persistent_pb2.ReadReq], context: grpc.ServicerContext
    ) -> Iterator[persistent_pb2.ReadResp]:
        self.guard("Read", context)
        first = next(request_iterator, None)
        if first is None:
            return
        if first.WhichOneof("content") != "options":
            _handler_exception(context)
        options = first.options
        _, stream = _subscription_stream(options, context)
        group = options.group_name
        metadata = _metadata(context)
        client = _Client(
            f"{stream}::{group}",
            options.buffer_size,
            _username(metadata) or "anonymous",
            metadata.get("connection-name", "<unknown>"),
            options.uuid_option.WhichOneof("content") != "string",
        )
        with self._lock:
            # ConnectToPersistentSubscription
            subscription = self._subscriptions.get(client.key)
            if subscription is None:
                _not_found(context, stream, group)
            if subscription.max_clients_reached:
                _max_subscribers(context, stream, group)
            subscription.connect(client)
        if not context.add_callback(lambda: self._disconnect(client)):
            self._disconnect(client)  # the call has already ended
            return
        # Acks and nacks arrive on the request stream while events are written to the
        # response stream: one reader thread per call, ending with the call (so bounded by the
        # server's worker pool, which runs this generator).
        threading.Thread(
            target=self._pump_requests,
            args=(request_iterator, client),
            name="esdb-emu-persistent-acks",
            daemon=True,
        ).start()
        try:
            yield persistent_pb2.ReadResp(
                subscription_confirmation=persistent_pb2.ReadResp.SubscriptionConfirmation(
                    subscription_id=client.key
                )
            )
            while context.is_active():
                items, dropped = client.take(0.25)
                for message, retry_count in items:
                    yield _read_resp(message, retry_count, client.structured_ids)
                if dropped is not None:
                    code, details, trailing = dropped
                    _abort(context, code, details, trailing)
        finally:
            self._disconnect(client)

    def _disconnect(self, client: _Client) -> None:
        with self._lock:
            subscription = client.subscription
            if subscription is not None:
                subscription.remove(client, drop=False)
        client.wake()

    def _pump_requests(self, requests: Iterator[persistent_pb2.ReadReq], client: _Client) -> None:
        # Grpc/...Read.cs PumpRequestStream: acks and nacks go to the group by its id; anything
        # malformed ends the pumping silently.
        try:
            for request in requests:
                kind = request.WhichOneof("content")
                if kind == "ack":
                    ids = [_uuid_text(i) for i in request.ack.ids]
                    with self._lock:
                        subscription = self._subscriptions.get(client.key)
                        if subscription is not None:
                            subscription.ack(ids)
                elif kind == "nack":
                    nack = request.nack
                    if nack.action not in range(5):
                        return
                    ids = [_uuid_text(i) for i in nack.ids]
                    with self._lock:
                        subscription = self._subscriptions.get(client.key)
                        if subscription is not None:
                            subscription.nack(ids, nack.action, nack.reason)
                else:
                    return
        except (grpc.RpcError, ValueError):
            return
        except Exception:  # the call ended under us (cancelled, server stopping)
            log.debug("persistent subscription request stream ended", exc_info=True)
