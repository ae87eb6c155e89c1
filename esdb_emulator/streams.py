"""The `event_store.client.streams.Streams` gRPC service: read, subscribe, append, delete.

Error reporting follows the real server (src/EventStore.Core/Services/Transport/Grpc/
RpcExceptions.cs, Status.cs, Streams.*.cs) so esdbclient raises the same exceptions:
- Append: wrong expected version in the response body (`wrong_expected_version`); a deleted
  stream as FAILED_PRECONDITION "Event stream 'x' is deleted."; too large as INVALID_ARGUMENT.
- BatchAppend: every error as a google.rpc.Status in the response, with packed details.
- Delete/Tombstone: FAILED_PRECONDITION "... WrongExpectedVersion ... Actual version: N".
- Read of a missing stream: a `stream_not_found` message; of a tombstoned one: FAILED_PRECONDITION.
"""

from __future__ import annotations

import datetime
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from esdbclient.protos.Grpc import shared_pb2, status_pb2, streams_pb2, streams_pb2_grpc
from google.protobuf import any_pb2, empty_pb2

from esdb_emulator.store import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ProposedEvent,
    Record,
    Store,
    StreamDeleted,
    StreamNotFound,
    WriteResult,
    WrongExpectedVersion,
    visible_in_all,
)

Guard = Callable[[str, grpc.ServicerContext], None]
_PAGE = 500  # records copied out of the store per lock acquisition
_LIVE_WAIT_SECONDS = 0.5
_RFC_CODE = {
    "AlreadyExists": 6,
    "NotFound": 5,
    "InvalidArgument": 3,
    "PermissionDenied": 7,
    "DeadlineExceeded": 4,
}
# ClusterVNodeOptions.Database.WriteTimeoutMs: a BatchAppend write not complete (its final
# request read) this long after its options answers Timeout, whatever deadline it asked for.
WRITE_TIMEOUT_SECONDS = 2.0


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


def expected_version(options: object, revision_field: str) -> int:
    """Map the request's expected_stream_revision oneof to the server's sentinels."""
    which = options.WhichOneof(  # type: ignore[attr-defined]
        "expected_stream_revision" if revision_field == "revision" else "expected_stream_position"
    )
    if which == revision_field:
        return int(getattr(options, revision_field))
    return {"any": ANY, "no_stream": NO_STREAM, "stream_exists": STREAM_EXISTS}[which]


class _Filter:
    """Server-side `$all` filter: a regex or prefixes, on stream name or event type."""

    def __init__(self, options: streams_pb2.ReadReq.Options) -> None:
        self.active = options.WhichOneof("filter_option") == "filter"
        self.window = 32
        self.checkpoint_interval = 32
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


class StreamsService(streams_pb2_grpc.StreamsServicer):
    def __init__(
        self,
        store: Store,
        guard: Guard,
        faults: object,
        is_anonymous: Callable[[grpc.ServicerContext], bool] = lambda context: False,
    ) -> None:
        self.store = store
        self.guard = guard
        self.faults = faults
        self.is_anonymous = is_anonymous

    # ------------------------------------------------------------------ Read
    def Read(
        self, request: streams_pb2.ReadReq, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp]:
        self.guard("Read", context)
        options = request.options
        reset_after = self.faults.read_reset_point("Read")  # type: ignore[attr-defined]
        if options.WhichOneof("stream_option") == "stream":
            responses = self._read_stream(options, context)
        else:
            responses = self._read_all(options, context)
        sent = 0
        for response in responses:
            if reset_after is not None and response.WhichOneof("content") == "event":
                if sent >= reset_after:
                    self.faults.count("reset")  # type: ignore[attr-defined]
                    context.abort(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
                sent += 1
            yield response

    def _read_stream(
        self, options: streams_pb2.ReadReq.Options, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp]:
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
            yield read_event(self.store, record, options.resolve_links)

    def _read_all(
        self, options: streams_pb2.ReadReq.Options, context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.ReadResp]:
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
                        yield read_event(self.store, record, options.resolve_links)
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
                    yield read_event(self.store, record, options.resolve_links)
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
                    yield read_event(self.store, record, options.resolve_links)
                if event_filter.active:
                    considered += 1
                    if considered >= event_filter.checkpoint_interval:
                        considered = 0
                        checkpointed = record.position
                        yield _checkpoint(record.position)

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
                yield read_event(self.store, record, options.resolve_links)

    # ----------------------------------------------------------------- Append
    def Append(
        self, request_iterator: Iterator[streams_pb2.AppendReq], context: grpc.ServicerContext
    ) -> streams_pb2.AppendResp:
        self.guard("Append", context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("content") != "options":
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "The first AppendReq must carry options"
            )
        options = first.options
        stream = options.stream_identifier.stream_name.decode()
        expected = expected_version(options, "revision")
        events: list[ProposedEvent] = []
        size = 0
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        for request in request_iterator:
            message = request.proposed_message
            event = _proposed(message, context)
            size += event.size
            if size > limit:
                context.set_trailing_metadata(
                    (
                        ("exception", "maximum-append-size-exceeded"),
                        ("maximum-append-size", str(limit)),
                    )
                )
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Maximum Append Size of {limit} Exceeded."
                )
            events.append(event)
        try:
            result = self.store.append(stream, expected, events)
        except WrongExpectedVersion as e:
            return streams_pb2.AppendResp(wrong_expected_version=_append_wev(e, options))
        except StreamDeleted:
            context.set_trailing_metadata(
                (("exception", "stream-deleted"), ("stream-name", stream))
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{stream}' is deleted."
            )
        return streams_pb2.AppendResp(success=_append_success(result))

    def BatchAppend(
        self, request_iterator: Iterator[streams_pb2.BatchAppendReq], context: grpc.ServicerContext
    ) -> Iterator[streams_pb2.BatchAppendResp]:
        self.guard("BatchAppend", context)
        anonymous = self.is_anonymous(context)
        pending: dict[str, _PendingWrite] = {}
        limit = self.faults.max_append_size  # type: ignore[attr-defined]
        for request in request_iterator:
            yield from _expired(pending)  # the real server's per-write timers, fired by now
            correlation = request.correlation_id.string
            if request.HasField("options"):
                if anonymous:  # anonymous stream access is off by default (ClusterVNodeOptions)
                    yield _batch_error(
                        request.correlation_id,
                        request.options.stream_identifier,
                        "AccessDenied",
                        "PermissionDenied",
                        shared_pb2.AccessDenied(),
                    )
                    continue
                timeout = min(_requested_timeout(request.options), WRITE_TIMEOUT_SECONDS)
                if timeout <= 0:
                    yield _timeout(request.correlation_id, request.options.stream_identifier)
                    continue
                if correlation not in pending:  # AddOrUpdate keeps a write already pending
                    pending[correlation] = _PendingWrite(
                        request.correlation_id, request.options, time.monotonic() + timeout
                    )
            write = pending.get(correlation)
            if write is None:
                continue
            options = write.options
            stream_id = options.stream_identifier
            too_big = False
            for message in request.proposed_messages:
                event = _proposed(message, context)
                write.size += event.size
                write.events.append(event)
                too_big = too_big or write.size > limit
            if too_big:
                del pending[correlation]
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "MaximumAppendSizeExceeded",
                    "InvalidArgument",
                    shared_pb2.MaximumAppendSizeExceeded(maxAppendSize=limit),
                )
                continue
            if not request.is_final:
                continue
            # The write's timer may have fired while its events were read (20,000 events
            # with a 1 ms deadline do): then the timer answered and nothing is written.
            yield from _expired(pending)
            if pending.pop(correlation, None) is None:
                continue
            events = write.events
            stream = stream_id.stream_name.decode()
            expected = expected_version(options, "stream_position")
            try:
                result = self.store.append(stream, expected, events)
            except WrongExpectedVersion as e:
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "WrongExpectedVersion",
                    "AlreadyExists",
                    _shared_wev(e, options),
                )
                continue
            except StreamDeleted:
                yield _batch_error(
                    request.correlation_id,
                    stream_id,
                    "StreamDeleted",
                    "NotFound",
                    shared_pb2.StreamDeleted(stream_identifier=stream_id),
                )
                continue
            success = streams_pb2.BatchAppendResp.Success(
                position=shared_pb2.AllStreamPosition(
                    commit_position=result.position, prepare_position=result.position
                )
            )
            if result.last_revision >= 0:
                success.current_revision = result.last_revision
            else:
                success.no_stream.CopyFrom(empty_pb2.Empty())
            yield streams_pb2.BatchAppendResp(
                correlation_id=request.correlation_id, stream_identifier=stream_id, success=success
            )

    # ----------------------------------------------------------------- Delete
    def Delete(
        self, request: streams_pb2.DeleteReq, context: grpc.ServicerContext
    ) -> streams_pb2.DeleteResp:
        self.guard("Delete", context)
        position = self._delete(request.options, context, "Delete", self.store.delete)
        return streams_pb2.DeleteResp(
            position=streams_pb2.DeleteResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def Tombstone(
        self, request: streams_pb2.TombstoneReq, context: grpc.ServicerContext
    ) -> streams_pb2.TombstoneResp:
        self.guard("Tombstone", context)
        position = self._delete(request.options, context, "Tombstone", self.store.tombstone)
        return streams_pb2.TombstoneResp(
            position=streams_pb2.TombstoneResp.Position(
                commit_position=position, prepare_position=position
            )
        )

    def _delete(
        self,
        options: object,
        context: grpc.ServicerContext,
        operation: str,
        action: Callable[[str, int], int],
    ) -> int:
        stream = options.stream_identifier.stream_name.decode()  # type: ignore[attr-defined]
        expected = expected_version(options, "revision")
        try:
            return action(stream, expected)
        except WrongExpectedVersion as e:
            context.set_trailing_metadata(
                (
                    ("exception", "wrong-expected-version"),
                    ("stream-name", stream),
                    ("expected-version", str(e.expected)),
                    ("actual-version", str(e.actual)),
                )
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{operation} failed due to WrongExpectedVersion. Stream: {stream}, "
                f"Expected version: {e.expected}, Actual version: {e.actual}",
            )
        except StreamDeleted:
            context.set_trailing_metadata(
                (("exception", "stream-deleted"), ("stream-name", stream))
            )
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"Event stream '{stream}' is deleted."
            )
        raise AssertionError("unreachable")


@dataclass(slots=True)
class _PendingWrite:
    """A BatchAppend write whose final request has not come yet (ClientWriteRequest)."""

    correlation_id: shared_pb2.UUID
    options: streams_pb2.BatchAppendReq.Options
    expires: float  # monotonic time at which its timer answers Timeout
    events: list[ProposedEvent] = field(default_factory=list)
    size: int = 0


def _requested_timeout(options: streams_pb2.BatchAppendReq.Options) -> float:
    """Streams.BatchAppend.cs GetRequestedTimeout: the `deadline` duration, else the time left
    until `deadline_21_10_0`, else unbounded."""
    which = options.WhichOneof("deadline_option")
    if which == "deadline":
        return options.deadline.ToTimedelta().total_seconds()
    if which == "deadline_21_10_0":
        return options.deadline_21_10_0.ToDatetime(tzinfo=datetime.UTC).timestamp() - time.time()
    return math.inf


def _timeout(
    correlation_id: shared_pb2.UUID, stream_id: shared_pb2.StreamIdentifier
) -> streams_pb2.BatchAppendResp:
    # Status.Timeout: code DeadlineExceeded, message "Timeout", details a packed Timeout.
    return _batch_error(
        correlation_id, stream_id, "Timeout", "DeadlineExceeded", shared_pb2.Timeout()
    )


def _expired(pending: dict[str, _PendingWrite]) -> Iterator[streams_pb2.BatchAppendResp]:
    now = time.monotonic()
    for correlation, write in list(pending.items()):
        if write.expires <= now:
            del pending[correlation]
            yield _timeout(write.correlation_id, write.options.stream_identifier)


def _checkpoint(position: int) -> streams_pb2.ReadResp:
    return streams_pb2.ReadResp(
        checkpoint=streams_pb2.ReadResp.Checkpoint(
            commit_position=position, prepare_position=position
        )
    )


def _proposed(message: object, context: grpc.ServicerContext) -> ProposedEvent:
    metadata = message.metadata  # type: ignore[attr-defined]
    for key in ("type", "content-type"):
        if key not in metadata:
            context.set_trailing_metadata((("exception", "missing-required-metadata-property"),))
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Required Metadata Property '{key}' is missing"
            )
    event_id = message.id.string  # type: ignore[attr-defined]
    try:
        event_id = str(uuid.UUID(event_id))
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{event_id}' is not a valid Uuid")
    if not metadata["type"]:
        # The real server's `new Event(...)` throws ArgumentException("Empty eventType
        # provided.") (src/EventStore.Core/Data/Event.cs), an unhandled exception that
        # ASP.NET Core gRPC reports as UNKNOWN "Exception was thrown by handler.".
        context.abort(grpc.StatusCode.UNKNOWN, "Exception was thrown by handler.")
    return ProposedEvent(
        event_id=event_id,
        type=metadata["type"],
        content_type=metadata["content-type"],
        data=message.data,  # type: ignore[attr-defined]
        metadata=message.custom_metadata,  # type: ignore[attr-defined]
    )


def _append_success(result: WriteResult) -> streams_pb2.AppendResp.Success:
    success = streams_pb2.AppendResp.Success(
        position=streams_pb2.AppendResp.Position(
            commit_position=result.position, prepare_position=result.position
        )
    )
    if result.last_revision >= 0:
        success.current_revision = result.last_revision
    else:
        success.no_stream.CopyFrom(shared_pb2.Empty())
    return success


def _append_wev(
    e: WrongExpectedVersion, options: streams_pb2.AppendReq.Options
) -> streams_pb2.AppendResp.WrongExpectedVersion:
    wev = streams_pb2.AppendResp.WrongExpectedVersion()
    which = options.WhichOneof("expected_stream_revision")
    if which == "revision":
        wev.expected_revision = options.revision
        wev.expected_revision_20_6_0 = options.revision
    elif which == "any":
        wev.expected_any.CopyFrom(shared_pb2.Empty())
        wev.any_20_6_0.CopyFrom(shared_pb2.Empty())
    elif which == "stream_exists":
        wev.expected_stream_exists.CopyFrom(shared_pb2.Empty())
        wev.stream_exists_20_6_0.CopyFrom(shared_pb2.Empty())
    else:
        wev.expected_no_stream.CopyFrom(shared_pb2.Empty())
        wev.expected_revision_20_6_0 = 2**64 - 1
    if e.actual < 0:
        wev.current_no_stream.CopyFrom(shared_pb2.Empty())
        wev.no_stream_20_6_0.CopyFrom(shared_pb2.Empty())
    else:
        wev.current_revision = e.actual
        wev.current_revision_20_6_0 = e.actual
    return wev


def _shared_wev(
    e: WrongExpectedVersion, options: streams_pb2.BatchAppendReq.Options
) -> shared_pb2.WrongExpectedVersion:
    wev = shared_pb2.WrongExpectedVersion()
    if e.actual < 0:
        wev.current_no_stream.CopyFrom(empty_pb2.Empty())
    else:
        wev.current_stream_revision = e.actual
    which = options.WhichOneof("expected_stream_position")
    if which == "stream_position":
        wev.expected_stream_position = options.stream_position
    elif which == "any":
        wev.expected_any.CopyFrom(empty_pb2.Empty())
    elif which == "stream_exists":
        wev.expected_stream_exists.CopyFrom(empty_pb2.Empty())
    else:
        wev.expected_no_stream.CopyFrom(empty_pb2.Empty())
    return wev


def _batch_error(
    correlation_id: shared_pb2.UUID,
    stream_id: shared_pb2.StreamIdentifier,
    message: str,
    code: str,
    details: object,
) -> streams_pb2.BatchAppendResp:
    packed = any_pb2.Any()
    packed.Pack(details)  # type: ignore[arg-type]
    return streams_pb2.BatchAppendResp(
        correlation_id=correlation_id,
        stream_identifier=stream_id,
        error=status_pb2.Status(code=_RFC_CODE[code], message=message, details=packed),
    )
