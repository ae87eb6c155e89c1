"""A shard's read of `$all`: a filtered catch-up subscription that tells how far the server
scanned, not only what matched.

A filtered *read* (`ReadReq` with `count`; the relay no longer makes one) scans page after
page until `count` records passed the filter or `$all` ended, and says nothing meanwhile: a
shard whose streams are rare in a long stretch of the log would learn nothing from a read cut
by its deadline. A filtered *subscription* (`ReadReq.Options.subscription`) sends, as it scans,
`checkpoint` messages (every `window * multiplier` records scanned, also where nothing
passed) and, on servers that have it, `caught_up` when it reaches the end of `$all`.

What the server guarantees (KurrentDB's Enumerator.AllSubscriptionFiltered and
AllReader.ReadAllEventsForwardInternal): a page reads from `CurrentPos` (the previous page's
`NextPos`, the post-position of the last record it scanned) and sends its matching records,
then, at the interval, a checkpoint at the later of the last record sent and `CurrentPos`.
So every record at or before a checkpoint's commit position was scanned, and every one of
them that passed was sent before the checkpoint message; a subscription from a position
resumes strictly after it. The end of `$all` shows as a checkpoint at the start of the last
page (not at the head) followed by `caught_up`; servers without `caught_up` just go quiet.

The call runs on the calling thread (internals.unary_stream_on_calling_thread), with the same
request options, metadata, credentials and `requires-leader` as the hot read, and a timeout:
the caller's remaining budget. DEADLINE_EXCEEDED from that timeout ends the scan normally.
Between checkpoints a scan may say nothing for long (a shard whose streams are rare): `cancel()`
from another thread (a slice stopping: `Scan.close`, ChunkReader) ends the call at once, and
the scan then ends normally too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from esdbclient.common import handle_rpc_error
from esdbclient.protos.Grpc import shared_pb2, streams_pb2

import core.eventstore.internals as internals
import core.eventstore.reads as reads
from core.model import Event

_Options = streams_pb2.ReadReq.Options
# The records the server scans per page of the subscription (its `maxSearchWindow`) and how
# many pages between checkpoints: a checkpoint every SCAN_WINDOW * SCAN_CHECKPOINT_PAGES
# records scanned. A page also ends at 32 matching records (the server's
# DefaultReadBatchSize). Tests lower the window to see many checkpoints on a small log.
SCAN_WINDOW = 1024
SCAN_CHECKPOINT_PAGES = 1
# How late our own DEADLINE_EXCEEDED may arrive after the timeout we set and still be ours.
_OWN_DEADLINE_SLACK = 0.05


@dataclass(frozen=True, slots=True)
class Scanned:
    """The server scanned `$all` up to `position` (inclusive) for this subscription and sent
    every record it passed up to there before this mark. `caught_up`: it reached the end of
    `$all` (the position is then its last checkpoint, None if it sent none)."""

    position: int | None
    caught_up: bool = False


def subscription_request(
    position: int | None, stream_regex: str, window: int, multiplier: int
) -> streams_pb2.ReadReq:
    """A catch-up subscription to `$all` strictly after `position` (None = its start), only
    the records of the streams `stream_regex` passes (searched, as .NET's `Regex.IsMatch`):
    built as esdbclient's `subscribe_to_all(filter_include=..., filter_by_stream_name=True,
    include_checkpoints=True)` builds it, with ids as strings like the hot read."""
    options = _Options(
        read_direction=_Options.Forwards,
        resolve_links=False,
        subscription=_Options.SubscriptionOptions(),
        uuid_option=_Options.UUIDOption(string=shared_pb2.Empty()),
        filter=_Options.FilterOptions(
            stream_identifier=_Options.FilterOptions.Expression(regex=stream_regex),
            max=window,
            checkpointIntervalMultiplier=multiplier,
        ),
    )
    return reads.from_position(options, position)


class ScanCall:
    """One filtered catch-up subscription call to `$all`: iterated (once, on one thread), the
    records strictly after `position` whose stream `stream_regex` passes, with a `Scanned`
    mark at each server checkpoint and at `caught_up`, until the caller stops, or `timeout`
    seconds pass, or `cancel()` is called from any thread (then it just ends). Raises
    esdbclient's exception for a failed call."""

    def __init__(
        self,
        client: Any,
        position: int | None,
        stream_regex: str,
        timeout: float,
        window: int | None = None,
        multiplier: int | None = None,
    ) -> None:
        spec = client.connection_spec
        requires_leader = "true" if spec.options.NodePreference == "leader" else "false"
        request = subscription_request(
            position,
            stream_regex,
            SCAN_WINDOW if window is None else window,
            SCAN_CHECKPOINT_PAGES if multiplier is None else multiplier,
        )
        self.cancelled = False
        self._ends = time.monotonic() + timeout
        self._messages = internals.unary_stream_on_calling_thread(
            internals.channel(client),
            reads.READ_METHOD,
            request.SerializeToString(),
            timeout=timeout,
            metadata=(*internals.call_metadata(client), ("requires-leader", requires_leader)),
            credentials=internals.call_credentials(client),
        )

    def cancel(self) -> None:
        """End the call now, from any thread; the iteration ends (quietly) as soon as it sees
        it, however long the server would have said nothing."""
        self.cancelled = True
        self._messages.cancel()

    def __iter__(self) -> Iterator[Event | Scanned]:
        messages = self._messages
        last: int | None = None
        try:
            for message in messages:
                response = reads.decode_response(message)
                which = response.WhichOneof("content")
                if which == "event":
                    event = reads.event_of(response.event)
                    if event is not None:
                        yield event
                elif which == "checkpoint":
                    last = response.checkpoint.commit_position
                    yield Scanned(last)
                elif which == "caught_up":
                    yield Scanned(last, caught_up=True)
        except grpc.RpcError as e:
            if self.cancelled:
                return  # cancelled by the caller: whatever the call ended with, it is over
            if (
                e.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
                and time.monotonic() >= self._ends - _OWN_DEADLINE_SLACK
            ):
                return  # our own timeout: the caller's budget is spent
            raise handle_rpc_error(e) from None
        finally:
            messages.close()  # a consumer that stops early ends the call (no-op once finished)


class Scan:
    """`EventStore.scan_all_after`'s scan: iterated on one thread (its calls, one after a
    transient failure, made there); `close()` from any thread ends it promptly: the call in
    flight is cancelled, no other is made, and the iteration ends as at its deadline."""

    def __init__(self) -> None:
        self.closed = False
        self.call: ScanCall | None = None  # the call in flight, set by the iterating thread
        self.items: Iterator[Event | Scanned] = iter(())

    def __iter__(self) -> Iterator[Event | Scanned]:
        return self.items

    def __next__(self) -> Event | Scanned:
        return next(self.items)

    def started(self, call: ScanCall) -> None:
        """The iterating thread made `call`: cancelled at once if the scan is closed already
        (`close` sets `closed` before it reads `call`, this sets `call` before it reads
        `closed`: one of them sees the other)."""
        self.call = call
        if self.closed:
            call.cancel()

    def close(self) -> None:
        """End the scan, from any thread (also the iterating one, between items)."""
        self.closed = True
        call = self.call
        if call is not None:
            call.cancel()
        with contextlib.suppress(ValueError):  # being iterated on another thread: it ends
            close = getattr(self.items, "close", None)
            if close is not None:
                close()
