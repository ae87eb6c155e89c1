"""`EventStore`: one server (the source or the target of a job) through esdbclient.

esdbclient's exceptions are translated into core.errors here; connection strings never
appear in a message.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient import exceptions as esdb
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

import core.eventstore.internals as internals
import core.eventstore.reads as reads
import core.eventstore.scans as scans
import core.eventstore.v2 as v2
from core.errors import (
    PermanentError,
    TransientError,
    WrongExpectedRevision,
)
from core.eventstore.admin import Admin
from core.eventstore.connection import esdbclient_uri, first_line
from core.eventstore.failures import described, trailer_refused, translate
from core.eventstore.multi import MultiAppender
from core.model import DELETED_STREAM, NO_STREAM, Event, OutEvent, StreamTail

T = TypeVar("T")
_PROBE_REVISION = 2**62  # a revision no stream reaches: appends expecting it always fail
_DEFAULT_ATTEMPTS = 4
# A scan's call never outlives a day, whatever deadline it is given (a budget without one).
_MAX_SCAN_SECONDS = 86_400.0


def _base(stream: str) -> str:
    """The stream a `$$` metastream belongs to; any other stream itself."""
    return stream[2:] if stream.startswith("$$") else stream


def _event(recorded: Any) -> Event:
    r = recorded
    return Event(
        stream=r.stream_name,
        revision=r.stream_position,
        event_id=r.id,
        type=r.type,
        content_type=r.content_type,
        data=r.data,
        metadata=r.metadata,
        created=r.recorded_at,
        commit_position=r.commit_position or 0,
        prepare_position=r.prepare_position or 0,
    )


class EventStore(Admin, MultiAppender):
    """A connection to one EventStoreDB (the source or the target of a job).

    Transient failures (unavailable, deadline exceeded, not leader) are retried with
    exponential backoff until `retry_deadline` (a `time.monotonic()` value; None = a few
    attempts). A retried append is harmless: the server treats the repeat of an append that did
    land as idempotent, because it carries the same event ids at the same expected revision.
    """

    def __init__(
        self,
        connection_string: str,
        *,
        side: str,
        timeout: float = 30.0,
        retry_deadline: float | None = None,
    ) -> None:
        self.side = side
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        # Set (SIGTERM, Ctrl-C: the slice's Budget.stop) to give up retrying at once.
        self.stop: threading.Event | None = None
        self.retries = 0
        self._v2: tuple[object, v2.Client, frozenset[tuple[str, str]] | None] | None = None
        # Streams found tombstoned in `$all` after a read a real node could not answer
        # (`_refused`): their reads answer StreamIsDeleted without asking again.
        self._tombstones: set[str] = set()
        try:
            self._client = EventStoreDBClient(esdbclient_uri(connection_string))
        except ValueError as e:
            raise PermanentError(
                f"{side}: invalid connection string: {first_line(e)}",
                hint="use esdb://user:password@host:2113 or esdb+discover://... (see the docs)",
            ) from None
        except esdb.EventStoreDBClientException as e:
            raise translate(e, side, "connect") from None
        except OSError as e:  # esdbclient reads tlsCaFile here
            raise PermanentError(
                f"{side}: cannot read the tlsCaFile {e.filename}: {e.strerror}",
                hint="set tlsCaFile in the connection string to the PEM file of the CA that "
                "signed the server certificate (a path readable where the relay runs)",
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retrying(self) -> Retrying:
        def stop(state: RetryCallState) -> bool:
            if self.stop is not None and self.stop.is_set():
                return True
            if self.retry_deadline is None:
                return state.attempt_number >= _DEFAULT_ATTEMPTS
            upcoming = state.next_action.sleep if state.next_action else 0.0
            return time.monotonic() + upcoming >= self.retry_deadline

        def count(_: RetryCallState) -> None:
            self.retries += 1

        return Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            stop=stop,
            before_sleep=count,
            reraise=True,
        )

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return fn()
            except esdb.EventStoreDBClientException as e:
                raise translate(e, self.side, action) from None
            except ValueError as e:  # another thread's reconnect closed the channel under us
                if "hannel closed" not in str(e) and "closed channel" not in str(e):
                    raise
                raise TransientError(f"{self.side}: {action}: the channel was reset") from None

        return self._retrying()(attempt)

    # ------------------------------------------------------------------ reads
    def _read_all(self, **kwargs: Any) -> Iterator[Any]:
        return self._whole(self._client.read_all(**kwargs))

    def _get_stream(self, stream: str, **kwargs: Any) -> tuple[Any, ...]:
        """A stream read's records; esdb.StreamIsDeleted for a tombstoned stream, also where a
        real node cannot say so (a non-ASCII name: `_refused`)."""
        if _base(stream) in self._tombstones:
            raise esdb.StreamIsDeleted(f"{stream!r} is tombstoned")
        try:
            return tuple(self._whole(self._client.read_stream(stream, **kwargs)))
        except (esdb.UnknownError, esdb.InternalError) as e:
            raise self._refused(e, stream, f"read {stream!r}") from None

    def _refused(self, error: Exception, stream: str, action: str) -> Exception:
        """What a call on `stream` that failed with UNKNOWN/INTERNAL means. A real node fails
        so when it cannot send the `stream-name` trailer of StreamDeleted (a non-ASCII name:
        failures.trailer_refused); `$all`, whose records carry no name in a trailer, tells
        whether the stream ends with its tombstone: a `$streamDeleted` record at revision
        long.MaxValue, the server's hard delete (nothing follows it; a scavenge keeps it).
        esdb.StreamIsDeleted if it does (remembered: a tombstone is for ever), else the
        error as it is, with what `$all` showed; `error` itself for any other name."""
        if not trailer_refused(error, stream):
            return error
        name = _base(stream)  # a tombstoned stream's metastream fails as the stream does
        try:
            records = self._read_all(
                backwards=True,
                filter_include=[re.escape(name)],
                filter_by_stream_name=True,
                limit=1,
                timeout=self.timeout,
            )
            found = [_event(r) for r in records]
        except esdb.DeadlineExceeded:
            shown = f"the search of $all for its tombstone outlasted the {self.timeout:g} s timeout"
        except esdb.EventStoreDBClientException as e:
            failed = translate(e, self.side, f"search $all for the tombstone of {name!r}")
            if isinstance(failed, TransientError):
                return failed  # the call is tried again, and the search with it
            shown = f"the search of $all for its tombstone failed ({failed})"
        else:
            if found and (found[0].stream, found[0].type, found[0].revision) == (
                name,
                "$streamDeleted",
                DELETED_STREAM,
            ):
                self._tombstones.add(name)
                return esdb.StreamIsDeleted(f"{stream!r} is tombstoned (its tombstone in $all)")
            shown = "$all holds no tombstone of it"
        return PermanentError(
            f"{self.side}: {action} failed: {described(error)}",
            hint="a KurrentDB node answers so for a stream whose name it cannot send back "
            f"(non-ASCII) when the stream is tombstoned, but {shown}: see the server's log "
            "for what failed",
        )

    def _whole(self, response: Any) -> Iterator[Any]:
        """The records of an esdbclient read, every one of them, or TransientError.

        esdbclient ends a read silently, as if the server had sent its last record, when its
        reconnect (after another thread's UNAVAILABLE or not-leader on this shared connection)
        cancels the reads in flight on the old channel: a stream would read as absent or
        shorter than it is, and a writer would then take an existing stream for a new one.
        Such a cut read raises TransientError (retried) instead.
        """
        with response:
            yield from response
            if internals.read_cancelled(response):
                raise TransientError(f"{self.side}: a read was cut short by a reconnect")

    def read_all_after(self, position: int | None, limit: int) -> Iterator[Event]:
        """Up to `limit` records of `$all` strictly after `position` (None = from the start).

        Nothing is filtered server-side (system records, $metadata, tombstones are needed;
        a shard reads only its streams through `scan_all_after`). A read broken off by a
        transient error (a reconnect's cut included) resumes after the last record it
        yielded. Read through core/eventstore/reads.py, not esdbclient's `read_all`: the
        relay's hot path.
        """
        sent = 0
        last = position
        for attempt in self._retrying():
            with attempt, self._read_errors("read $all"):
                for event in self._read_all_once(last, limit - sent):
                    sent += 1
                    last = event.commit_position
                    yield event
                return

    def scan_all_after(
        self, position: int | None, stream_regex: str, deadline: float
    ) -> scans.Scan:
        """The records of `$all` strictly after `position` whose stream `stream_regex`
        passes, with a `Scanned` mark each time the server says how far it scanned (also
        where nothing passed) and when it caught up with the end of `$all`, until the caller
        stops, `deadline` (a `time.monotonic()` value) passes, or the scan is closed (from
        any thread: `Scan.close`): a filtered catch-up subscription (core/eventstore/
        scans.py), a shard's read. A scan broken off by a transient error resumes after the
        last record or mark it yielded, within the same deadline."""
        scan = scans.Scan()
        scan.items = self._scan(scan, position, stream_regex, deadline)
        return scan

    def _scan(
        self, scan: scans.Scan, position: int | None, stream_regex: str, deadline: float
    ) -> Iterator[Event | scans.Scanned]:
        last = position
        for attempt in self._retrying():
            with attempt, self._read_errors("scan $all"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or scan.closed:
                    return
                call = scans.ScanCall(
                    self._client, last, stream_regex, min(remaining, _MAX_SCAN_SECONDS)
                )
                scan.started(call)
                for item in call:
                    if isinstance(item, Event):
                        last = item.commit_position
                    elif item.position is not None and (last is None or item.position > last):
                        last = item.position
                    yield item
                return

    @contextlib.contextmanager
    def _read_errors(self, action: str) -> Iterator[None]:
        """A `$all` read's errors as the relay's: transient ones retried by `_retrying`."""
        try:
            yield
        except esdb.EventStoreDBClientException as e:
            raise translate(e, self.side, action) from None
        except ValueError as e:  # begun on a channel another thread's reconnect closed
            if "hannel closed" not in str(e) and "closed channel" not in str(e):
                raise
            raise TransientError(f"{self.side}: {action}: the channel was reset") from None

    def _read_all_once(self, position: int | None, limit: int) -> Iterator[Event]:
        if limit <= 0:
            return
        if position is None:
            yield from reads.read_all_forwards(self._client, None, limit, self.timeout)
            return
        # The read is inclusive of the given position: ask for one more and drop it.
        sent = 0
        for event in reads.read_all_forwards(self._client, position, limit + 1, self.timeout):
            if event.commit_position == position:
                continue
            if sent == limit:
                return
            sent += 1
            yield event

    def head_position(self) -> int:
        """Commit position of the last record in `$all` (0 for an empty database)."""
        return self._call(
            "read the head of $all",
            lambda: self._client.get_commit_position(filter_exclude=[], timeout=self.timeout),
        )

    def last_events(self, count: int) -> list[Event]:
        """The newest `count` records of `$all`, newest first."""
        return self._call(
            "read the end of $all",
            lambda: [
                _event(r)
                for r in self._read_all(
                    backwards=True, filter_exclude=[], limit=count, timeout=self.timeout
                )
            ],
        )

    def stream_records_backwards(self, stream: str, before: int | None, limit: int) -> list[Event]:
        """The stream's `limit` records in `$all` strictly before `before` (None = from the
        end), newest first, even if stream reads hide them (`$tb`, `$maxCount`): `$all` keeps
        records until a scavenge."""
        start = {} if before is None else {"commit_position": before}

        def read() -> list[Event]:
            records = self._read_all(
                **start,
                backwards=True,
                filter_include=[re.escape(stream)],
                filter_by_stream_name=True,
                limit=limit,
                timeout=self.timeout,
            )
            return [_event(r) for r in records]

        return self._call(f"read $all for {stream!r}", read)

    def stream_records_after(self, stream: str, position: int | None, limit: int) -> list[Event]:
        """The stream's next `limit` records in `$all` after `position` (None = from the
        start), hidden from stream reads or not."""

        def read() -> list[Event]:
            records = self._read_all(
                commit_position=position,
                filter_include=[re.escape(stream)],
                filter_by_stream_name=True,
                limit=limit + 1,
                timeout=self.timeout,
            )
            found = [_event(r) for r in records if r.commit_position != position]
            return found[:limit]

        return self._call(f"read $all for {stream!r}", read)

    def read_all_backwards(self, before: int | None, limit: int) -> list[Event]:
        """Up to `limit` records of `$all` strictly before `before` (None = from the end),
        newest first, unfiltered."""

        def read() -> list[Event]:
            if before is None:
                records = self._read_all(
                    backwards=True, filter_exclude=[], limit=limit, timeout=self.timeout
                )
            else:
                records = self._read_all(
                    commit_position=before,
                    backwards=True,
                    filter_exclude=[],
                    limit=limit,
                    timeout=self.timeout,
                )
            return [_event(r) for r in records]

        return self._call("read $all backwards", read)

    def record_at(self, position: int) -> Event | None:
        """The `$all` record at exactly this commit position, if there is one."""

        def read() -> Event | None:
            for r in self._read_all(
                commit_position=position, filter_exclude=[], limit=1, timeout=self.timeout
            ):
                return _event(r) if r.commit_position == position else None
            return None

        return self._call(f"read $all at {position}", read)

    def read_stream_backwards(
        self, stream: str, from_revision: int | None, limit: int
    ) -> list[Event]:
        """A stream's visible events at or before `from_revision` (None = its end), newest
        first; [] if it does not exist."""

        def read() -> list[Event]:
            try:
                recorded = self._get_stream(
                    stream,
                    stream_position=from_revision,
                    backwards=True,
                    limit=limit,
                    timeout=self.timeout,
                )
            except esdb.NotFound:
                return []
            return [_event(r) for r in recorded]

        return self._call(f"read {stream!r} backwards", read)

    # ------------------------------------------------------- persistent subscriptions
    def stream_tail(self, stream: str, limit: int) -> StreamTail:
        def read() -> StreamTail:
            try:
                recorded = self._get_stream(
                    stream, backwards=True, limit=max(1, limit), timeout=self.timeout
                )
            except esdb.NotFound:
                return StreamTail((), NO_STREAM)
            except esdb.StreamIsDeleted:
                return StreamTail((), DELETED_STREAM, tombstoned=True)
            events = tuple(_event(r) for r in reversed(recorded))
            return StreamTail(events, events[-1].revision if events else NO_STREAM)

        return self._call(f"read the tail of {stream!r}", read)

    def read_stream(
        self, stream: str, *, from_revision: int = 0, limit: int = sys.maxsize
    ) -> list[Event]:
        """A stream's visible events; [] if it does not exist; StreamTombstoned if hard-deleted."""

        def read() -> list[Event]:
            try:
                recorded = self._get_stream(
                    stream, stream_position=from_revision, limit=limit, timeout=self.timeout
                )
            except esdb.NotFound:
                return []
            return [_event(r) for r in recorded]

        return self._call(f"read {stream!r}", read)

    def stream_metadata(self, stream: str) -> dict:
        def read() -> dict:
            try:
                recorded = self._get_stream(
                    "$$" + stream, backwards=True, limit=1, timeout=self.timeout
                )
                metadata = json.loads(recorded[0].data) if recorded else {}
            except esdb.NotFound:
                return {}
            except json.JSONDecodeError:
                return {}
            return metadata

        return self._call(f"read the metadata of {stream!r}", read)

    # ----------------------------------------------------------------- writes
    def append(self, stream: str, expected: int, events: Sequence[OutEvent]) -> int:
        """Append with an exact expected revision (NO_STREAM for a new stream).

        Returns the commit position of the last event. An append that repeats events already
        at exactly these revisions succeeds without writing them again (the server's
        idempotence by event id), which makes replays after a crash harmless.
        """
        current: int | StreamState = StreamState.NO_STREAM if expected == NO_STREAM else expected
        return self._append(stream, current, events)

    def append_any(self, stream: str, events: Sequence[OutEvent]) -> int:
        return self._append(stream, StreamState.ANY, events)

    def _append(self, stream: str, current: int | StreamState, events: Sequence[OutEvent]) -> int:
        new_events = [
            NewEvent(
                id=e.event_id,
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                content_type=e.content_type,
            )
            for e in events
        ]
        return self._call(
            f"append to {stream!r}",
            lambda: self._client.append_to_stream(
                stream, current_version=current, events=new_events, timeout=self.timeout
            ),
        )

    def current_revision(self, stream: str) -> int:
        """The stream's last revision even when `$tb`/`$maxCount` hide every event from reads
        (NO_STREAM if it has none). Asks with an empty append expecting an impossible
        revision: the server answers with the current one and writes nothing."""
        try:
            self._append(stream, _PROBE_REVISION, [])
        except WrongExpectedRevision as e:
            if e.actual is not None:
                return e.actual
            raise
        return _PROBE_REVISION

    def delete(self, stream: str) -> None:
        """Soft-delete a stream (as the server's Delete does: `$tb` = long.MaxValue); a stream
        that does not exist counts as deleted."""

        def delete() -> None:
            try:
                self._client.delete_stream(
                    stream, current_version=StreamState.ANY, timeout=self.timeout
                )
            except esdb.NotFound:
                return
            except (esdb.UnknownError, esdb.InternalError) as e:
                raise self._refused(e, stream, f"delete {stream!r}") from None

        self._call(f"delete {stream!r}", delete)

    def tombstone(self, stream: str) -> None:
        """Hard-delete a stream; a stream already tombstoned counts as done."""

        def tombstone() -> None:
            try:
                self._client.tombstone_stream(
                    stream, current_version=StreamState.ANY, timeout=self.timeout
                )
            except esdb.StreamIsDeleted:
                return
            except (esdb.UnknownError, esdb.InternalError) as e:
                found = self._refused(e, stream, f"tombstone {stream!r}")
                if not isinstance(found, esdb.StreamIsDeleted):
                    raise found from None

        self._call(f"tombstone {stream!r}", tombstone)
