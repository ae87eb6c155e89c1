"""One subscription group: what it has read of its source, what is in flight with which
consumer, what it retries or parks, and where it checkpoints."""

from __future__ import annotations

import bisect
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import replace

from esdbclient.protos.Grpc import persistent_pb2

from esdb_emulator.persistent.checkpoints import Checkpoints
from esdb_emulator.persistent.client import Client, Message
from esdb_emulator.persistent.errors import dropped
from esdb_emulator.persistent.parked import ParkedMessages
from esdb_emulator.persistent.settings import LINK_EVENT_TYPE, Pos, Settings, Source
from esdb_emulator.persistent.stats import Statistics
from esdb_emulator.persistent.strategies import SENT, SKIPPED, strategy
from esdb_emulator.request_stats import RequestStatistics
from esdb_emulator.store import (
    ANY,
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    WrongExpectedVersion,
    visible_in_all,
)

log = logging.getLogger(__name__)

# PersistentSubscriptionService creates its PersistentSubscriptionStreamReader with 100.
_MAX_PULL_BATCH = 100
_PAGE = 500
_BATCH_TOO_BIG = (
    # PersistentSubscription's constructor throws ArgumentOutOfRangeException(paramName: ...)
    "Specified argument was out of the range of valid values. "
    "(Parameter 'ReadBatchSize may not be greater than or equal to BufferSize')"
)

# ReadReq.Nack.Action
NACK_UNKNOWN, NACK_PARK, NACK_RETRY, NACK_SKIP, NACK_STOP = range(5)


class Subscription:
    """One subscription group (PS/PersistentSubscription.cs). Callers hold the service lock."""

    def __init__(
        self, store: Store, source: Source, group: str, settings: Settings, start_from: Pos
    ) -> None:
        if settings.read_batch_size >= settings.history_buffer_size:
            raise ValueError(_BATCH_TOO_BIG)
        self.store = store
        self.source = source
        self.group = group
        self.settings = settings
        self.start_from = start_from
        self.key = f"{source.stream}::{group}"
        self.checkpoints = Checkpoints(store, source, self.key)
        self.parked = ParkedMessages(store, self.key)
        self.strategy = strategy(settings.consumer_strategy)
        self.clients: dict[str, Client] = {}
        self.retry: list[Message] = []
        self.buffer: deque[Message] = deque()
        self.outstanding: dict[str, Message] = {}
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
        self.initial: Pos | None = None  # the loaded checkpoint: read strictly after it
        self._statistics = Statistics()
        self._skip_start: Pos | None = None
        self._skip_count = 0
        self.cursor = 0
        self._load_state()

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        checkpoint = self.checkpoints.read()
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
        self.parked.load_stats()

    def _cursor_of(self, position: Pos) -> int:
        return position[0] if isinstance(position, tuple) else position

    def _source_end(self) -> int:
        if self.source.is_all:
            return self.store.head_position
        return self.store.stream_state(self.source.stream)[0] + 1

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
        self.buffer.append(Message(record.event_id, event, link, wire, position))
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
                if result == SENT:
                    del queue[i]
                    if new_seq:
                        self.next_seq += 1
                    self._begin_processing(candidate)
                elif result == SKIPPED:
                    i += 1
                else:
                    return

    def _begin_processing(self, message: Message) -> None:
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

    def _retry(self, message: Message) -> None:
        """RetryMessage: back into the retry buffer, in source order, one retry more."""
        self._forget(message.event_id)
        again = replace(message, retry_count=message.retry_count + 1)
        if not again.replayed:
            for i, other in enumerate(self.retry):
                if other.position is not None and again.position < other.position:  # type: ignore[operator]
                    self.retry.insert(i, again)
                    return
        self.retry.append(again)

    def _retried_too_often(self, message: Message) -> bool:
        # ActionTakenForRetriedMessage
        if message.retry_count < self.settings.max_retry_count:
            return False
        self._park(message, f"Reached retry count of {self.settings.max_retry_count}")
        return True

    def _park(self, message: Message, reason: str) -> None:
        self.parked.park(message, reason)
        # The server completes the park asynchronously; callers push once they are done.
        self._forget(message.event_id)

    def ack(self, event_ids: list[str]) -> None:
        # AcknowledgeMessagesProcessed
        self._processed(event_ids)

    def nack(self, event_ids: list[str], action: int, reason: str) -> None:
        # NotAcknowledgeMessagesProcessed / HandleNackedMessage
        for event_id in event_ids:
            message = self.outstanding.get(event_id)
            if action in (NACK_RETRY, NACK_UNKNOWN):
                if message is not None and not self._retried_too_often(message):
                    self._retry(message)
            elif action == NACK_PARK:
                if message is not None:
                    self._park(message, "Client explicitly NAK'ed message.\n" + reason)
            elif action == NACK_STOP:
                pass  # StopSubscription() is a no-op in the server
            else:
                self.outstanding.pop(event_id, None)
        self._processed(event_ids)

    def _processed(self, event_ids: list[str]) -> None:
        """Acked or nacked: the consumers' slots free up; checkpoint, read more, push."""
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
        lowest: Message | None = None
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
                self.checkpoints.write(position)
            self.stats_checkpoint = position

    # ------------------------------------------------------------------ parked messages
    def replay_parked(self, stop_at: int | None) -> None:
        """RetryParkedMessages: parked messages go to the end of the retry buffer, then the
        parked stream is truncated ($tb) past what was replayed."""
        messages = self.parked.replay(stop_at)
        if messages is None:
            return
        self.retry.extend(messages)
        self.push()

    def delete_streams(self) -> None:
        # Delete(): soft-delete the checkpoint and parked message streams.
        for stream in (self.checkpoints.stream, self.parked.stream):
            with contextlib.suppress(StreamDeleted, WrongExpectedVersion):
                self.store.delete(stream, ANY)

    # ------------------------------------------------------------------ consumers
    @property
    def max_clients_reached(self) -> bool:
        limit = self.settings.max_subscriber_count
        return limit != 0 and len(self.clients) >= limit

    def connect(self, client: Client) -> None:
        if self.settings.extra_statistics:  # PersistentSubscriptionClient: RequestStatistics
            client.statistics = RequestStatistics()
        self.clients[client.correlation_id] = client
        client.subscription = self
        self.strategy.added(client)
        if self.faulted:
            self.remove(client, drop=True, retry=False)
            return
        self.push()

    def remove(self, client: Client, *, drop: bool, retry: bool = True) -> None:
        if self.clients.pop(client.correlation_id, None) is None:
            return
        self.strategy.removed(client)
        if drop:
            client.drop(dropped(self.source.stream, self.group))
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

    def info(self) -> persistent_pb2.SubscriptionInfo:
        return self._statistics.info(self)
