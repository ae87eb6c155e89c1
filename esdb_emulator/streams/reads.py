"""Streams.Read: reads of a stream or of `$all`, forwards or backwards, and catch-up
subscriptions to either (Streams.Read.cs and the Enumerators it runs)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Generator, Iterator

import grpc
from esdbclient.protos.Grpc import shared_pb2, streams_pb2

from esdb_emulator.store import (
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    _record_size,
    visible_in_all,
)
from esdb_emulator.streams.read_wire import read_event_bytes

_PAGE = 500  # records copied out of the store per lock acquisition
_LIVE_WAIT_SECONDS = 0.5
# The matching records a catch-up subscription's page holds at most (Enumerator.cs
# DefaultReadBatchSize, passed as the page read's maxCount).
_CATCH_UP_PAGE_EVENTS = 32
_VERDICTS = 100_000  # a filter's remembered verdicts per stream, at most


def recorded_event(record: Record) -> streams_pb2.ReadResp.ReadEvent.RecordedEvent:
    return streams_pb2.ReadResp.ReadEvent.RecordedEvent(
        id=shared_pb2.UUID(string=record.event_id),
        stream_identifier=shared_pb2.StreamIdentifier(stream_name=record.stream.encode()),
        stream_revision=record.revision,
        prepare_position=record.position,
        commit_position=record.position,
        metadata={
            "type": record.type,
            "content-type": record.content_type,
            "created": str(record.created),
        },
        custom_metadata=record.metadata,
        data=record.data,
    )


def read_event(store: Store, record: Record, resolve_links: bool) -> streams_pb2.ReadResp:
    if resolve_links and record.type == "$>":
        # Streams.Read.cs ConvertToReadEvent: a link whose target is gone resolves to no event
        # (ConvertToRecordedEvent returns null): the response has the link and no `event`.
        target = store.resolve_link(record.data)
        message = streams_pb2.ReadResp.ReadEvent(
            link=recorded_event(record), commit_position=record.position
        )
        if target is not None:
            message.event.CopyFrom(recorded_event(target))
    else:
        message = streams_pb2.ReadResp.ReadEvent(
            event=recorded_event(record), commit_position=record.position
        )
    return streams_pb2.ReadResp(event=message)


class _Filter:
    """Server-side `$all` filter: a regex or prefixes, on stream name or event type."""

    def __init__(self, options: streams_pb2.ReadReq.Options) -> None:
        self.active = options.WhichOneof("filter_option") == "filter"
        self.window = 32
        self.checkpoint_interval = 32
        self._verdicts: dict[str, bool] = {}
        if not self.active:
            return
        f = options.filter
        self.by_stream = f.WhichOneof("filter") == "stream_identifier"
        expression = f.stream_identifier if self.by_stream else f.event_type
        self.regex = re.compile(expression.regex) if expression.regex else None
        self.prefixes = tuple(expression.prefix)
        if f.WhichOneof("window") == "max" and f.max > 0:
            self.window = f.max
        multiplier = f.checkpointIntervalMultiplier or 1
        self.checkpoint_interval = self.window * multiplier

    def matches(self, record: Record) -> bool:
        if self.active and self.by_stream:
            # A scan asks about the same streams again and again: one verdict per stream.
            stream = record.stream
            verdict = self._verdicts.get(stream)
            if verdict is None:
                if len(self._verdicts) >= _VERDICTS:
                    self._verdicts.clear()
                verdict = self._verdicts[stream] = self._matches(record)
            return verdict
        return self._matches(record)

    def _matches(self, record: Record) -> bool:
        if not visible_in_all(record):
            return False
        if not self.active:
            return True
        value = record.stream if self.by_stream else record.type
        # Streams.Read ConvertToEventFilter: a non-empty regex wins; otherwise the prefixes.
        if self.regex is not None:
            # EventStoreDB uses .NET Regex.Match(...).Success, i.e. a search, not a full match.
            return bool(self.regex.search(value))
        return bool(self.prefixes) and value.startswith(self.prefixes)


class Reads:
    """Reads and catch-up subscriptions over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(
        self, options: streams_pb2.ReadReq.Options, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp | bytes]:
        """The responses of a read: an event as its serialized `ReadResp` (read_wire), the
        others as messages."""
        if options.WhichOneof("stream_option") == "stream":
            return self._read_stream(options, context)
        return self._read_all(options, context)

    def _read_stream(
        self, options: streams_pb2.ReadReq.Options, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp | bytes]:
        stream_options = options.stream
        name = stream_options.stream_identifier.stream_name.decode()
        backwards = options.read_direction == streams_pb2.ReadReq.Options.Backwards
        which = stream_options.WhichOneof("revision_option")
        subscribe = options.WhichOneof("count_option") == "subscription"
        if subscribe:
            yield from self._subscribe_stream(
                name, which, stream_options.revision, options, context
            )
            return
        try:
            records = self.store.visible_records(name)
        except StreamNotFound:
            yield streams_pb2.ReadResp(
                stream_not_found=streams_pb2.ReadResp.StreamNotFound(
                    stream_identifier=stream_options.stream_identifier
                )
            )
            return
        except StreamDeleted:
            context.set_trailing_metadata((("exception", "stream-deleted"), ("stream-name", name)))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted.")
        count = options.count
        if backwards:
            if which == "revision":
                records = [r for r in records if r.revision <= stream_options.revision]
            selected = list(reversed(records))[:count]
        else:
            if which == "revision":
                records = [r for r in records if r.revision >= stream_options.revision]
            elif which == "end":
                records = []
            selected = records[:count]
        for record in selected:
            yield read_event_bytes(self.store, record, options.resolve_links)

    def _read_all(
        self, options: streams_pb2.ReadReq.Options, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp | bytes]:
        all_options = options.all
        which = all_options.WhichOneof("all_option")
        backwards = options.read_direction == streams_pb2.ReadReq.Options.Backwards
        event_filter = _Filter(options)
        if options.WhichOneof("count_option") == "subscription":
            yield from self._subscribe_all(
                which, all_options.position, event_filter, options, context
            )
            return
        remaining = options.count
        if backwards:
            if which == "position":
                # Exclusive of the record at the position (AllReader.ReadAllEventsBackwardInternal;
                # esdbclient test_read_all_filter_default: "backwards here doesn't include event
                # at commit position").
                index = self.store.all_index_ending_by(all_options.position.commit_position)
            elif which == "start":
                index = -1
            else:
                index = len(self.store) - 1
            while remaining > 0 and index >= 0:
                page = self.store.log_slice(max(0, index - _PAGE + 1), index + 1)
                index -= len(page)
                for record in reversed(page):
                    if event_filter.matches(record):
                        yield read_event_bytes(self.store, record, options.resolve_links)
                        remaining -= 1
                        if remaining == 0:
                            return
            return
        if which == "position":
            index = self.store.all_index_from(all_options.position.commit_position)
        elif which == "end":
            return
        else:
            index = 0
        while remaining > 0:
            page = self.store.log_slice(index, index + _PAGE)
            if not page:
                return
            index += len(page)
            for record in page:
                if event_filter.matches(record):
                    yield read_event_bytes(self.store, record, options.resolve_links)
                    remaining -= 1
                    if remaining == 0:
                        return

    def _confirmation(self) -> streams_pb2.ReadResp:
        return streams_pb2.ReadResp(
            confirmation=streams_pb2.ReadResp.SubscriptionConfirmation(
                subscription_id=str(uuid.uuid4())
            )
        )

    def _subscribe_all(
        self,
        which: str,
        position: streams_pb2.ReadReq.Options.Position,
        event_filter: _Filter,
        options: streams_pb2.ReadReq.Options,
        context: grpc.ServicerContext,
    ) -> Iterator[streams_pb2.ReadResp]:
        # Catch-up subscriptions are exclusive of the given position (esdbclient's
        # test_subscribe_to_all_from_commit_position_current shows the real server's rule).
        if which == "position":
            index = self.store.all_index_from(position.commit_position + 1)
        elif which == "end":
            index = len(self.store)
        else:
            index = 0
        yield self._confirmation()
        considered = 0
        caught_up = False
        last_position: int | None = None
        # Enumerator.AllSubscriptionFiltered drops a checkpoint that is not after the previous
        # one ("possible to receive the same checkpoint twice"), e.g. when the interval ends on
        # the last record and the going-live checkpoint would repeat it.
        checkpointed = -1
        if event_filter.active and which != "end":
            start = position.commit_position if which == "position" else -1
            # The first page reads from the position itself (AllReader: records at or after
            # it), counting the record there as scanned; the enumerator skips sending it.
            first = self.store.all_index_from(start) if which == "position" else 0
            index, checkpointed = yield from self._catch_up_filtered(
                first, start, event_filter, options, context
            )
            caught_up = True
        while context.is_active():
            page = self.store.log_slice(index, index + min(_PAGE, event_filter.window))
            if not page:
                if not caught_up:
                    caught_up = True
                    if (
                        event_filter.active
                        and last_position is not None
                        and last_position > checkpointed
                    ):
                        checkpointed = last_position
                        yield _checkpoint(last_position)
                    yield streams_pb2.ReadResp(caught_up=streams_pb2.ReadResp.CaughtUp())
                with self.store.changed:
                    if len(self.store) <= index:
                        self.store.changed.wait(_LIVE_WAIT_SECONDS)
                continue
            index += len(page)
            for record in page:
                last_position = record.position
                if event_filter.matches(record):
                    yield read_event_bytes(self.store, record, options.resolve_links)
                if event_filter.active:
                    considered += 1
                    if considered >= event_filter.checkpoint_interval:
                        considered = 0
                        checkpointed = record.position
                        yield _checkpoint(record.position)

    def _catch_up_filtered(
        self,
        index: int,
        start: int,
        event_filter: _Filter,
        options: streams_pb2.ReadReq.Options,
        context: grpc.ServicerContext,
    ) -> Generator[streams_pb2.ReadResp, None, tuple[int, int]]:
        """A filtered subscription's catch-up, page by page as Enumerator.AllSubscriptionFiltered
        reads it: a page scans up to `window` records (AllReader's maxSearchWindow) or stops at
        32 matching ones (DefaultReadBatchSize), sends them, then takes as its checkpoint the
        later of the last record sent and the page's start (`CurrentPos`, the post-position of
        the last record the previous page scanned; the subscription's position for the
        first). Every `window * multiplier` records scanned it sends that checkpoint; at the
        end of `$all` it sends it, then `caught_up`. A checkpoint not after the previous one
        is dropped. Returns (the index to go live from, the last checkpoint sent)."""
        checkpoint = start  # -1: HeadOfTf, no checkpoint to send yet
        page_start = max(start, 0)  # ReadPage reads from (0, 0) for HeadOfTf
        counter = 0
        sent = -1
        while context.is_active():
            page = self.store.log_slice(index, index + event_filter.window)
            scanned = matched = 0
            for record in page:
                scanned += 1
                if event_filter.matches(record):
                    matched += 1
                    if record.position <= start:
                        continue  # the subscription's own position: only the first page's
                    yield read_event_bytes(self.store, record, options.resolve_links)
                    checkpoint = record.position
                    if matched >= _CATCH_UP_PAGE_EVENTS:
                        break
            index += scanned
            end = scanned < event_filter.window and matched < _CATCH_UP_PAGE_EVENTS
            if scanned and checkpoint < page_start:
                checkpoint = page_start  # CurrentPos < NextPos: the page moved on
            counter += scanned
            if scanned:
                last = page[scanned - 1]
                page_start = last.position + _record_size(last)  # this page's NextPos
            if end or counter >= event_filter.checkpoint_interval:
                if not end:
                    counter %= event_filter.checkpoint_interval
                if checkpoint > sent:
                    sent = checkpoint
                    yield _checkpoint(checkpoint)
            if end:
                yield streams_pb2.ReadResp(caught_up=streams_pb2.ReadResp.CaughtUp())
                return index, sent
        return index, sent

    def _subscribe_stream(
        self,
        name: str,
        which: str,
        revision: int,
        options: streams_pb2.ReadReq.Options,
        context: grpc.ServicerContext,
    ) -> Iterator[streams_pb2.ReadResp]:
        # Exclusive of the given revision, like the real server's stream subscriptions.
        if which == "end":
            after = self.store.stream_state(name)[0]
        elif which == "revision":
            after = revision
        else:
            after = -1
        yield self._confirmation()
        caught_up = False
        while context.is_active():
            try:
                records = [r for r in self.store.visible_records(name) if r.revision > after]
            except StreamNotFound:
                records = []
            except StreamDeleted:
                context.set_trailing_metadata(
                    (("exception", "stream-deleted"), ("stream-name", name))
                )
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{name}' is deleted."
                )
            if not records:
                if not caught_up:
                    caught_up = True
                    yield streams_pb2.ReadResp(caught_up=streams_pb2.ReadResp.CaughtUp())
                with self.store.changed:
                    self.store.changed.wait(_LIVE_WAIT_SECONDS)
                continue
            for record in records:
                after = record.revision
                yield read_event_bytes(self.store, record, options.resolve_links)


def _checkpoint(position: int) -> streams_pb2.ReadResp:
    return streams_pb2.ReadResp(
        checkpoint=streams_pb2.ReadResp.Checkpoint(
            commit_position=position, prepare_position=position
        )
    )
