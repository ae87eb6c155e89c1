"""Drive the emulator through kurrentdbclient's public API and report one JSON line per check.

kurrentdbclient needs grpcio >= 1.80 and esdbclient pins grpcio 1.71, so this script runs in its
own virtualenv (`.venv-kurrent`, see tests/emulator/kurrent-requirements.txt), never in the
project's. tests/emulator/test_kurrentdbclient.py starts the emulator and runs it:

    .venv-kurrent/bin/python tests/emulator/kurrent_probe.py 'esdb://127.0.0.1:2113?Tls=false'

Each line printed is `{"check": name, "ok": bool, "detail": ...}`; the exit status is 1 when
any check failed. Nothing here imports the project, so the script only needs kurrentdbclient.

What kurrentdbclient 1.3.5 sends (read in its installed source):
- the same v1 services as esdbclient (`event_store.client.streams.Streams`,
  `...persistent_subscriptions.PersistentSubscriptions`, `...gossip.Gossip`) with the same
  field numbers: its protos are compiled under kurrentdbclient/protos/v1 with the same proto
  packages, so the method paths on the wire are identical;
- no ServerFeatures call at connect (neither client calls
  `event_store.client.server_features.ServerFeatures/GetSupportedMethods`);
- `kurrentdb.protocol.v2.streams.StreamsService/AppendSession` and `/AppendRecords` only for
  `multi_append_to_stream()` / `append_records()` (KurrentDB >= 25.1 / 26.1);
- errors are first decoded from the `grpc-status-details-bin` trailer (google.rpc.Status) when
  the server sends one, then by status code and details text like esdbclient;
- `ReadResp.CaughtUp` carries stream_revision/position in its protos; an empty CaughtUp (as
  EventStoreDB <= 25.0 sends, src/Protos/Grpc/streams.proto `message CaughtUp {}`) is decoded
  as a CaughtUp with positions 0.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kurrentdbclient import CaughtUp, KurrentDBClient, NewEvent, NewEvents, StreamState
from kurrentdbclient.exceptions import (
    AccessDeniedError,
    KurrentDBClientError,
    NotFoundError,
    StreamIsDeletedError,
    UnauthenticatedError,
    WrongCurrentVersionError,
)

CALL_TIMEOUT = 10.0
SUBSCRIPTION_TIMEOUT = 15.0


class CheckFailed(AssertionError):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_raises(
    exc_type: type[BaseException] | tuple[type[BaseException], ...], call: Callable[[], object]
) -> BaseException:
    try:
        result = call()
    except exc_type as e:
        return e
    except Exception as e:
        raise CheckFailed(f"expected {_names(exc_type)}, got {type(e).__name__}: {e}") from e
    raise CheckFailed(f"expected {_names(exc_type)}, call returned {result!r}")


def _names(exc_type: type[BaseException] | tuple[type[BaseException], ...]) -> str:
    types = exc_type if isinstance(exc_type, tuple) else (exc_type,)
    return " or ".join(t.__name__ for t in types)


def event(type_: str, n: int = 0, **extra: Any) -> NewEvent:
    data = json.dumps({"n": n, **extra}).encode()
    return NewEvent(type=type_, data=data, metadata=b'{"probe": true}')


def with_query(uri: str, **changes: str | None) -> str:
    """The connection string with query options replaced (None removes one)."""
    parts = urlsplit(uri)
    query = {k: v for k, v in parse_qsl(parts.query) if k.lower() not in _lower(changes)}
    query.update({k: v for k, v in changes.items() if v is not None})
    return urlunsplit(parts._replace(query=urlencode(query)))


def _lower(changes: dict[str, str | None]) -> set[str]:
    return {k.lower() for k in changes}


def with_scheme_and_user(uri: str, scheme: str | None = None, userinfo: str | None = None) -> str:
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    if userinfo is not None:
        netloc = f"{userinfo}@{netloc}"
    elif "@" in parts.netloc:
        netloc = parts.netloc
    return urlunsplit(parts._replace(scheme=scheme or parts.scheme, netloc=netloc))


def describe(e: BaseException) -> str:
    """One line for an unexpected exception; gRPC status codes spelled out."""
    text = str(e)
    code = re.search(r"status = StatusCode\.(\w+)", text)
    if code:
        details = re.search(r'details = "([^"]*)"', text)
        text = f"gRPC {code.group(1)}: {details.group(1) if details else ''}"
        if code.group(1) == "UNIMPLEMENTED":
            text += " (the emulator does not serve this method yet)"
    frames = traceback.extract_tb(e.__traceback__)
    where = ""
    if frames:
        where = f" (raised at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})"
    return f"{type(e).__name__}: {text}{where}"


class Probe:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        options = {k.lower(): v for k, v in parse_qsl(urlsplit(uri).query)}
        self.tls = options.get("tls", "true").lower() != "false"
        self.ca_file = options.get("tlscafile")
        self.run = uuid.uuid4().hex[:10]
        self.stream = f"probe-{self.run}-main"
        self.type_a = f"ProbeA{self.run}"
        self.type_b = f"ProbeB{self.run}"
        self.client: KurrentDBClient | None = None
        self.positions: list[int] = []  # commit positions of the events appended to self.stream
        self.results: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ harness
    def check(self, name: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        try:
            detail = fn()
            ok = True
        except CheckFailed as e:
            ok, detail = False, str(e)
        except Exception as e:
            ok, detail = False, describe(e)
        line = {
            "check": name,
            "ok": ok,
            "detail": detail,
            "seconds": round(time.monotonic() - started, 3),
        }
        self.results.append(line)
        print(json.dumps(line, default=str), flush=True)

    @property
    def db(self) -> KurrentDBClient:
        if self.client is None:
            raise CheckFailed("no client: the connect check failed")
        return self.client

    def main(self) -> int:
        self.check("connect", self.connect)
        self.check("append_single", self.append_single)
        self.check("append_batch", self.append_batch)
        self.check("append_idempotent", self.append_idempotent)
        self.check("wrong_current_version", self.wrong_current_version)
        self.check("expected_exists_and_no_stream", self.expected_exists_and_no_stream)
        self.check("get_stream", self.get_stream)
        self.check("get_stream_not_found", self.get_stream_not_found)
        self.check("get_current_version", self.get_current_version)
        self.check("read_all", self.read_all)
        self.check("read_all_commit_position", self.read_all_commit_position)
        self.check("read_all_filters", self.read_all_filters)
        self.check("get_commit_position", self.get_commit_position)
        self.check("stream_metadata", self.stream_metadata)
        self.check("metadata_events_filtered", self.metadata_events_filtered)
        self.check("subscribe_to_all", self.subscribe_to_all)
        self.check("subscribe_to_all_filtered", self.subscribe_to_all_filtered)
        self.check("subscribe_to_stream", self.subscribe_to_stream)
        self.check("delete_stream", self.delete_stream)
        self.check("tombstone_stream", self.tombstone_stream)
        self.check("persistent_create_stream", self.persistent_create_stream)
        self.check("persistent_create_all", self.persistent_create_all)
        self.check("persistent_list", self.persistent_list)
        self.check("persistent_get_info", self.persistent_get_info)
        self.check("persistent_extra_statistics", self.persistent_extra_statistics)
        self.check("persistent_update", self.persistent_update)
        self.check("persistent_delete", self.persistent_delete)
        self.check("read_gossip", self.read_gossip)
        self.check("discover_connection", self.discover_connection)
        self.check("v2_multi_append_unimplemented", self.v2_multi_append_unimplemented)
        if self.tls:
            self.check("tls_ca_file", self.tls_ca_file)
            self.check("tls_bad_credentials", self.tls_bad_credentials)
        if self.client is not None:
            self.client.close()
        failed = [r["check"] for r in self.results if not r["ok"]]
        print(
            json.dumps({"summary": True, "checks": len(self.results), "failed": failed}),
            flush=True,
        )
        return 1 if failed else 0

    # ------------------------------------------------------------------ streams
    def connect(self) -> str:
        self.client = KurrentDBClient(self.uri)
        # The channel is lazy: make one call so that a dead endpoint fails here.
        position = self.client.get_commit_position(timeout=CALL_TIMEOUT)
        return f"connected to {self.client.connection_target}, commit position {position}"

    def append_single(self) -> dict[str, int]:
        # A single NewEvent goes through Streams.Append (client.py append_to_stream).
        position = self.db.append_to_stream(
            self.stream,
            events=event(self.type_a, 0),
            current_version=StreamState.NO_STREAM,
            timeout=CALL_TIMEOUT,
        )
        expect(isinstance(position, int) and position > 0, f"commit position {position!r}")
        self.positions.append(position)
        return {"commit_position": position}

    def append_batch(self) -> dict[str, int]:
        # A sequence of events goes through Streams.BatchAppend.
        position = self.db.append_to_stream(
            self.stream,
            events=[event(self.type_b, 1), event(self.type_a, 2), event(self.type_b, 3)],
            current_version=0,
            timeout=CALL_TIMEOUT,
        )
        expect(self.positions, "append_single did not record a position")
        expect(position > self.positions[-1], f"{position} not after {self.positions[-1]}")
        events = self.db.get_stream(self.stream, timeout=CALL_TIMEOUT)
        self.positions = [e.commit_position for e in events]
        expect(self.positions[-1] == position, f"last event at {self.positions[-1]} != {position}")
        return {"commit_position": position, "positions": self.positions}

    def append_idempotent(self) -> str:
        stream = f"probe-{self.run}-idem"
        batch = [event(self.type_a, i) for i in range(3)]
        first = self.db.append_to_stream(
            stream, events=batch, current_version=StreamState.NO_STREAM, timeout=CALL_TIMEOUT
        )
        again = self.db.append_to_stream(
            stream, events=batch, current_version=StreamState.NO_STREAM, timeout=CALL_TIMEOUT
        )
        single = self.db.append_to_stream(
            stream, events=batch[2], current_version=1, timeout=CALL_TIMEOUT
        )
        events = self.db.get_stream(stream, timeout=CALL_TIMEOUT)
        expect(len(events) == 3, f"{len(events)} events after re-appending the same ids")
        expect(again == first, f"repeat append returned {again}, first {first}")
        return f"first={first} repeat={again} repeat-single={single}"

    def wrong_current_version(self) -> dict[str, str]:
        seen = {}
        # BatchAppend path: the error arrives as BatchAppendResp.error (WrongExpectedVersion).
        e = expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.append_to_stream(
                self.stream, events=[event(self.type_a, 9)], current_version=1, timeout=5
            ),
        )
        expect(e.actual_version == 3, f"actual_version {e.actual_version!r} (batch)")
        expect(e.expected_version == 1, f"expected_version {e.expected_version!r} (batch)")
        seen["batch"] = str(e)
        # Append path: AppendResp.wrong_expected_version.
        e = expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.append_to_stream(
                self.stream, events=event(self.type_a, 9), current_version=7, timeout=5
            ),
        )
        expect(e.actual_version == 3, f"actual_version {e.actual_version!r} (single)")
        seen["single"] = str(e)
        # Expecting NO_STREAM of a stream that exists.
        e = expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.append_to_stream(
                self.stream,
                events=event(self.type_a, 9),
                current_version=StreamState.NO_STREAM,
                timeout=5,
            ),
        )
        seen["no_stream"] = str(e)
        expect(len(self.db.get_stream(self.stream, timeout=5)) == 4, "a rejected append wrote")
        return seen

    def expected_exists_and_no_stream(self) -> dict[str, str]:
        stream = f"probe-{self.run}-exists"
        e = expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.append_to_stream(
                stream, events=[event(self.type_a)], current_version=StreamState.EXISTS, timeout=5
            ),
        )
        expect(e.actual_version == StreamState.NO_STREAM, f"actual_version {e.actual_version!r}")
        self.db.append_to_stream(
            stream, events=event(self.type_a), current_version=StreamState.ANY, timeout=5
        )
        self.db.append_to_stream(
            stream, events=[event(self.type_a)], current_version=StreamState.EXISTS, timeout=5
        )
        self.db.append_to_stream(
            stream, events=event(self.type_a), current_version=StreamState.EXISTS, timeout=5
        )
        version = self.db.get_current_version(stream, timeout=5)
        expect(version == 2, f"current version {version}")
        return {"exists_on_missing": str(e), "current_version": str(version)}

    def get_stream(self) -> str:
        events = self.db.get_stream(self.stream, timeout=CALL_TIMEOUT)
        expect(len(events) == 4, f"{len(events)} events")
        expect([e.stream_position for e in events] == [0, 1, 2, 3], "stream positions")
        expect(
            [e.type for e in events] == [self.type_a, self.type_b, self.type_a, self.type_b],
            f"types {[e.type for e in events]}",
        )
        expect([json.loads(e.data)["n"] for e in events] == [0, 1, 2, 3], "data round trip")
        expect(all(e.metadata == b'{"probe": true}' for e in events), "metadata round trip")
        expect(all(e.content_type == "application/json" for e in events), "content type")
        expect(all(e.stream_name == self.stream for e in events), "stream name")
        expect(all(e.recorded_at is not None for e in events), "recorded_at missing")
        backwards = self.db.get_stream(self.stream, backwards=True, limit=2, timeout=5)
        expect([e.stream_position for e in backwards] == [3, 2], "backwards limit 2")
        from_two = self.db.get_stream(self.stream, stream_position=2, timeout=5)
        expect([e.stream_position for e in from_two] == [2, 3], "forwards from position 2")
        back_from_one = self.db.get_stream(self.stream, stream_position=1, backwards=True)
        expect([e.stream_position for e in back_from_one] == [1, 0], "backwards from 1")
        read = list(self.db.read_stream(self.stream, limit=3, timeout=5))
        expect(len(read) == 3, "read_stream limit 3")
        return "forwards, backwards, from position, limit"

    def get_stream_not_found(self) -> str:
        e = expect_raises(
            NotFoundError, lambda: self.db.get_stream(f"probe-{self.run}-nothing", timeout=5)
        )
        return type(e).__name__

    def get_current_version(self) -> dict[str, str]:
        current = self.db.get_current_version(self.stream, timeout=5)
        missing = self.db.get_current_version(f"probe-{self.run}-nothing", timeout=5)
        expect(current == 3, f"current version {current}")
        expect(missing == StreamState.NO_STREAM, f"missing stream: {missing!r}")
        return {"current": str(current), "missing": str(missing)}

    # ------------------------------------------------------------------ $all
    def read_all(self) -> dict[str, int]:
        events = list(self.db.read_all(timeout=CALL_TIMEOUT))
        positions = [e.commit_position for e in events]
        expect(positions == sorted(set(positions)), "$all positions not strictly increasing")
        ours = [e for e in events if e.stream_name == self.stream]
        expect([e.commit_position for e in ours] == self.positions, "our events in $all")
        expect(not [e for e in events if e.type.startswith("$")], "system events not excluded")
        backwards = list(self.db.read_all(backwards=True, limit=4, timeout=5))
        expect(
            [e.commit_position for e in backwards] == sorted(positions, reverse=True)[:4],
            "backwards limit 4",
        )
        everything = list(self.db.read_all(filter_exclude=(), timeout=CALL_TIMEOUT))
        expect(len(everything) >= len(events), "unfiltered read smaller than filtered")
        return {"filtered": len(events), "unfiltered": len(everything)}

    def read_all_commit_position(self) -> dict[str, Any]:
        expect(len(self.positions) == 4, "need the 4 appended positions")
        start = self.positions[1]
        events = [
            e
            for e in self.db.read_all(commit_position=start, timeout=CALL_TIMEOUT)
            if e.stream_name == self.stream
        ]
        got = [e.commit_position for e in events]
        # Reading $all forwards from a position includes the event at that position ...
        expect(got == self.positions[1:], f"from {start}: {got}")
        # ... backwards it does not: the server's AllReader.ReadAllEventsBackwardInternal only
        # returns records whose post-position <= the given position (EventStore
        # src/EventStore.Core/Services/Storage/ReaderIndex/AllReader.cs), and kurrentdbclient's
        # own test_read_all asserts "backwards here doesn't include event at commit position".
        at = self.positions[2]
        back = [e.commit_position for e in self.db.read_all(commit_position=at, backwards=True)]
        back = [p for p in back if p in self.positions]
        expect(
            back == self.positions[1::-1],
            f"backwards from {at}: {back}, expected {self.positions[1::-1]} (exclusive of {at})",
        )
        return {"from": start, "forwards": got, "backwards": back}

    def read_all_filters(self) -> dict[str, int]:
        other = f"probe-{self.run}-other"
        self.db.append_to_stream(
            other,
            events=[event(self.type_b, 10), event(self.type_a, 11)],
            current_version=StreamState.NO_STREAM,
            timeout=5,
        )
        by_type = list(self.db.read_all(filter_include=(self.type_a,), timeout=CALL_TIMEOUT))
        expect(by_type and all(e.type == self.type_a for e in by_type), "event type include")
        expect(len(by_type) >= 3, f"{len(by_type)} events of type A")
        by_stream = list(
            self.db.read_all(
                filter_include=(f"probe-{self.run}-other",),
                filter_by_stream_name=True,
                timeout=CALL_TIMEOUT,
            )
        )
        expect([e.stream_name for e in by_stream] == [other, other], "stream name regex")
        by_prefix = list(
            self.db.read_all(
                filter_include=(f"probe-{self.run}-o",),
                filter_by_stream_name=True,
                filter_by_prefix=True,
                timeout=CALL_TIMEOUT,
            )
        )
        expect([e.stream_name for e in by_prefix] == [other, other], "stream name prefix")
        excluded = list(
            self.db.read_all(
                filter_exclude=(r"\$.+", self.type_b), timeout=CALL_TIMEOUT, limit=100000
            )
        )
        expect(not [e for e in excluded if e.type == self.type_b], "event type exclude")
        type_prefix = list(
            self.db.read_all(
                filter_include=(f"ProbeB{self.run}",), filter_by_prefix=True, timeout=5
            )
        )
        expect(len(type_prefix) == 3, f"event type prefix matched {len(type_prefix)}")
        return {
            "type": len(by_type),
            "stream": len(by_stream),
            "stream_prefix": len(by_prefix),
            "type_prefix": len(type_prefix),
        }

    def get_commit_position(self) -> dict[str, int]:
        position = self.db.append_to_stream(
            f"probe-{self.run}-last",
            events=event(self.type_a),
            current_version=StreamState.ANY,
            timeout=5,
        )
        got = self.db.get_commit_position(timeout=5)
        expect(got == position, f"get_commit_position {got} != last append {position}")
        ours = self.db.get_commit_position(
            filter_include=(self.stream,), filter_by_stream_name=True, timeout=5
        )
        expect(ours == self.positions[-1], f"filtered position {ours} != {self.positions[-1]}")
        return {"commit_position": got, "filtered": ours}

    def stream_metadata(self) -> dict[str, Any]:
        stream = f"probe-{self.run}-meta"
        none, version = self.db.get_stream_metadata(stream, timeout=5)
        expect(none == {} and version == StreamState.NO_STREAM, f"before: {none}, {version}")
        self.db.set_stream_metadata(
            stream,
            metadata={"$maxCount": 100, "custom": "x"},
            current_version=StreamState.NO_STREAM,
            timeout=5,
        )
        metadata, version = self.db.get_stream_metadata(stream, timeout=5)
        expect(metadata == {"$maxCount": 100, "custom": "x"}, f"metadata {metadata}")
        expect(version == 0, f"metadata version {version}")
        self.db.set_stream_metadata(stream, metadata={"custom": "y"}, current_version=0, timeout=5)
        metadata, version = self.db.get_stream_metadata(stream, timeout=5)
        expect(metadata == {"custom": "y"} and version == 1, f"second: {metadata}, {version}")
        expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.set_stream_metadata(
                stream, metadata={"custom": "z"}, current_version=0, timeout=5
            ),
        )
        return {"metadata": metadata, "version": version}

    def metadata_events_filtered(self) -> dict[str, int]:
        meta_stream = f"$$probe-{self.run}-meta"
        default = [e for e in self.db.read_all(timeout=CALL_TIMEOUT) if e.type == "$metadata"]
        expect(not default, "$metadata events pass the default exclude filter")
        unfiltered = [
            e
            for e in self.db.read_all(filter_exclude=(), timeout=CALL_TIMEOUT)
            if e.stream_name == meta_stream
        ]
        expect(len(unfiltered) == 2, f"{len(unfiltered)} $metadata events in {meta_stream}")
        expect(all(e.type == "$metadata" for e in unfiltered), "types in the $$ stream")
        return {"metadata_events": len(unfiltered)}

    # ------------------------------------------------------------------ subscriptions
    def _collect_until_caught_up(self, subscription: Any) -> tuple[list[Any], CaughtUp | None]:
        received = []
        for item in subscription:
            if isinstance(item, CaughtUp):
                return received, item
            received.append(item)
        return received, None

    def _append_later(self, stream: str, new: NewEvent, delay: float = 0.3) -> threading.Thread:
        def append() -> None:
            time.sleep(delay)
            self.db.append_to_stream(stream, events=new, current_version=StreamState.ANY)

        thread = threading.Thread(target=append, daemon=True)
        thread.start()
        return thread

    def subscribe_to_all(self) -> dict[str, Any]:
        expect(self.positions, "need the appended positions")
        start = self.positions[0]
        sub = self.db.subscribe_to_all(
            commit_position=start, include_caught_up=True, timeout=SUBSCRIPTION_TIMEOUT
        )
        try:
            history, caught_up = self._collect_until_caught_up(sub)
            expect(caught_up is not None, "subscription ended before CaughtUp")
            ours = [e.commit_position for e in history if e.stream_name == self.stream]
            # Subscribing to $all from a position is exclusive of that position.
            expect(ours == self.positions[1:], f"history {ours} != {self.positions[1:]}")
            live = event(self.type_a, 100)
            thread = self._append_later(f"probe-{self.run}-live", live)
            received = next(iter(sub))
            thread.join(5)
            expect(received.id == live.id, f"live event {received.id} != {live.id}")
        finally:
            sub.stop()
        return {
            "history": len(history),
            "caught_up_commit_position": caught_up.commit_position if caught_up else None,
            "live_commit_position": received.commit_position,
        }

    def subscribe_to_all_filtered(self) -> dict[str, int]:
        sub = self.db.subscribe_to_all(
            filter_include=(f"probe-{self.run}-",),
            filter_by_stream_name=True,
            filter_by_prefix=True,
            include_caught_up=True,
            include_checkpoints=True,
            window_size=2,
            checkpoint_interval_multiplier=1,
            timeout=SUBSCRIPTION_TIMEOUT,
        )
        try:
            history, caught_up = self._collect_until_caught_up(sub)
        finally:
            sub.stop()
        expect(caught_up is not None, "no CaughtUp")
        events = [e for e in history if not e.is_checkpoint]
        checkpoints = [e for e in history if e.is_checkpoint]
        expect(all(e.stream_name.startswith(f"probe-{self.run}-") for e in events), "filter")
        expect(len(events) >= 10, f"{len(events)} events")
        return {"events": len(events), "checkpoints": len(checkpoints)}

    def subscribe_to_stream(self) -> dict[str, Any]:
        stream = f"probe-{self.run}-sub"
        self.db.append_to_stream(
            stream,
            events=[event(self.type_a, i) for i in range(3)],
            current_version=StreamState.NO_STREAM,
        )
        sub = self.db.subscribe_to_stream(
            stream, include_caught_up=True, timeout=SUBSCRIPTION_TIMEOUT
        )
        try:
            history, caught_up = self._collect_until_caught_up(sub)
            expect(caught_up is not None, "no CaughtUp")
            expect([e.stream_position for e in history] == [0, 1, 2], "history positions")
            live = event(self.type_a, 3)
            thread = self._append_later(stream, live)
            received = next(iter(sub))
            thread.join(5)
            expect(received.id == live.id and received.stream_position == 3, "live event")
        finally:
            sub.stop()
        after = self.db.subscribe_to_stream(stream, stream_position=1, timeout=5)
        try:
            first = next(iter(after))
        finally:
            after.stop()
        # A stream subscription from a revision is exclusive of it.
        expect(first.stream_position == 2, f"from position 1 first got {first.stream_position}")
        return {"history": len(history), "live_position": received.stream_position}

    # ------------------------------------------------------------------ deletion
    def delete_stream(self) -> dict[str, Any]:
        stream = f"probe-{self.run}-del"
        self.db.append_to_stream(
            stream,
            events=[event(self.type_a, i) for i in range(3)],
            current_version=StreamState.NO_STREAM,
        )
        expect_raises(
            WrongCurrentVersionError,
            lambda: self.db.delete_stream(stream, current_version=0, timeout=5),
        )
        self.db.delete_stream(stream, current_version=2, timeout=5)
        expect_raises(NotFoundError, lambda: self.db.get_stream(stream, timeout=5))
        version = self.db.get_current_version(stream, timeout=5)
        expect(version == StreamState.NO_STREAM, f"current version after delete: {version}")
        # A soft delete writes $tb = long.MaxValue (EventNumber.DeletedStream); the next append
        # "soft-undeletes" the stream, rewriting $tb to the first new revision
        # (EventStore src/EventStore.Core/Services/Storage/StorageWriterService.cs,
        # SoftUndeleteStream).
        deleted, _ = self.db.get_stream_metadata(stream, timeout=5)
        expect(deleted.get("$tb") == 2**63 - 1, f"soft delete metadata {deleted}")
        # Appends after a soft delete continue the revisions.
        self.db.append_to_stream(
            stream, events=event(self.type_a, 3), current_version=StreamState.NO_STREAM
        )
        after = self.db.get_stream(stream, timeout=5)
        expect([e.stream_position for e in after] == [3], f"after delete {after}")
        undeleted, _ = self.db.get_stream_metadata(stream, timeout=5)
        expect(undeleted.get("$tb") == 3, f"metadata after the append {undeleted}")
        missing = expect_raises(
            NotFoundError,
            lambda: self.db.delete_stream(
                f"probe-{self.run}-never", current_version=StreamState.EXISTS, timeout=5
            ),
        )
        return {"deleted": deleted, "undeleted": undeleted, "missing": type(missing).__name__}

    def tombstone_stream(self) -> dict[str, str]:
        stream = f"probe-{self.run}-tomb"
        self.db.append_to_stream(
            stream,
            events=[event(self.type_a, i) for i in range(2)],
            current_version=StreamState.NO_STREAM,
        )
        self.db.tombstone_stream(stream, current_version=StreamState.ANY, timeout=5)
        seen = {}
        e = expect_raises(StreamIsDeletedError, lambda: self.db.get_stream(stream, timeout=5))
        seen["read"] = str(e)
        e = expect_raises(
            StreamIsDeletedError,
            lambda: self.db.append_to_stream(
                stream, events=[event(self.type_a)], current_version=StreamState.ANY, timeout=5
            ),
        )
        seen["batch_append"] = str(e)
        # A single-event append goes through Streams.Append, whose FAILED_PRECONDITION
        # kurrentdbclient maps with handle_rpc_error (not the streams variant).
        e = expect_raises(
            KurrentDBClientError,
            lambda: self.db.append_to_stream(
                stream, events=event(self.type_a), current_version=StreamState.ANY, timeout=5
            ),
        )
        seen["append"] = f"{type(e).__name__}: {e}"
        e = expect_raises(
            StreamIsDeletedError,
            lambda: self.db.tombstone_stream(stream, current_version=StreamState.ANY, timeout=5),
        )
        seen["tombstone_again"] = str(e)
        e = expect_raises(
            StreamIsDeletedError,
            lambda: self.db.delete_stream(stream, current_version=StreamState.ANY, timeout=5),
        )
        seen["delete_after"] = str(e)
        return seen

    # ------------------------------------------------------------------ persistent subscriptions
    @property
    def group(self) -> str:
        return f"probe-group-{self.run}"

    def persistent_create_stream(self) -> str:
        self.db.create_subscription_to_stream(
            self.group, self.stream, stream_position=1, max_retry_count=7, timeout=CALL_TIMEOUT
        )
        e = expect_raises(
            Exception,
            lambda: self.db.create_subscription_to_stream(self.group, self.stream, timeout=5),
        )
        expect(type(e).__name__ == "AlreadyExistsError", f"duplicate: {type(e).__name__}: {e}")
        return f"created {self.group} on {self.stream}; duplicate -> {type(e).__name__}"

    def persistent_create_all(self) -> str:
        expect(self.positions, "need the appended positions")
        self.db.create_subscription_to_all(
            self.group,
            commit_position=self.positions[0],
            filter_include=(f"probe-{self.run}-",),
            filter_by_stream_name=True,
            timeout=CALL_TIMEOUT,
        )
        return f"created {self.group} on $all from {self.positions[0]}"

    def persistent_list(self) -> dict[str, Any]:
        everything = self.db.list_subscriptions(timeout=CALL_TIMEOUT)
        ours = {(s.event_source, s.group_name) for s in everything if s.group_name == self.group}
        expect(ours == {(self.stream, self.group), ("$all", self.group)}, f"listed {sorted(ours)}")
        to_stream = self.db.list_subscriptions_to_stream(self.stream, timeout=CALL_TIMEOUT)
        expect([s.group_name for s in to_stream] == [self.group], "list to stream")
        return {"listed": sorted(ours)}

    def persistent_get_info(self) -> dict[str, Any]:
        info = self.db.get_subscription_info(self.group, self.stream, timeout=CALL_TIMEOUT)
        expect(info.event_source == self.stream, f"event_source {info.event_source}")
        expect(info.group_name == self.group, "group name")
        expect(info.start_from == "1", f"start_from {info.start_from!r}")
        expect(info.max_retry_count == 7, f"max_retry_count {info.max_retry_count}")
        expect(info.consumer_strategy == "DispatchToSingle", info.consumer_strategy)
        all_info = self.db.get_subscription_info(self.group, timeout=CALL_TIMEOUT)
        expect(all_info.event_source == "$all", f"event_source {all_info.event_source}")
        # start_from is the settings' position ToString(): the revision for a stream and
        # C:<commit>/P:<prepare> for $all (EventStore src/EventStore.Core/Services/
        # PersistentSubscription/PersistentSubscription{SingleStream,AllStream}Position.cs).
        # kurrentdbclient parses that format back in update_subscription_to_all.
        expect(
            all_info.start_from == f"C:{self.positions[0]}/P:{self.positions[0]}",
            f"$all start_from {all_info.start_from!r}",
        )
        return {
            "stream": {
                "start_from": info.start_from,
                "status": info.status,
                "last_checkpointed_event_position": info.last_checkpointed_event_position,
                "last_known_event_position": info.last_known_event_position,
            },
            "all": {
                "start_from": all_info.start_from,
                "last_checkpointed_event_position": all_info.last_checkpointed_event_position,
            },
        }

    def persistent_extra_statistics(self) -> dict[str, Any]:
        # With extra statistics each connection reports its push-to-ack latencies
        # (RequestStatistics.GetMeasurementDetails via PersistentSubscriptions.Info.cs).
        keys = ["Mean", "Median", "Fastest", *(f"Quintile {i}" for i in range(1, 6))]
        keys += ["90%", "95%", "99%", "99.5%", "99.9%", "Highest"]
        stream, group = f"probe-{self.run}-stats", f"stats-{self.run}"
        self.db.append_to_stream(
            stream,
            events=[event(self.type_a, n) for n in range(5)],
            current_version=StreamState.NO_STREAM,
            timeout=CALL_TIMEOUT,
        )
        self.db.create_subscription_to_stream(
            group, stream, extra_statistics=True, timeout=CALL_TIMEOUT
        )
        subscription = self.db.read_subscription_to_stream(
            group, stream, timeout=SUBSCRIPTION_TIMEOUT
        )
        try:
            for n, received in enumerate(subscription, start=1):
                time.sleep(0.01)
                subscription.ack(received)
                if n == 5:
                    break
            deadline = time.monotonic() + 5
            while True:
                info = self.db.get_subscription_info(group, stream, timeout=CALL_TIMEOUT)
                measured = [c.observed_measurements for c in info.connections]
                if (measured and measured[0]) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            subscription.stop()
        expect(len(measured) == 1, f"connections {measured}")
        expect([m.key for m in measured[0]] == keys, f"keys {[m.key for m in measured[0]]}")
        values = {m.key: m.value for m in measured[0]}
        expect(values["Fastest"] >= 10, f"latencies {values}")
        return values

    def persistent_update(self) -> dict[str, str]:
        self.db.update_subscription_to_stream(
            self.group, self.stream, max_retry_count=3, timeout=CALL_TIMEOUT
        )
        info = self.db.get_subscription_info(self.group, self.stream, timeout=CALL_TIMEOUT)
        expect(info.max_retry_count == 3, f"max_retry_count after update {info.max_retry_count}")
        # The client re-sends the start position it read from get_info: it must survive.
        expect(info.start_from == "1", f"start_from after update {info.start_from!r}")
        self.db.update_subscription_to_all(self.group, max_retry_count=4, timeout=CALL_TIMEOUT)
        all_info = self.db.get_subscription_info(self.group, timeout=CALL_TIMEOUT)
        expect(all_info.max_retry_count == 4, f"$all max_retry_count {all_info.max_retry_count}")
        expect(
            all_info.start_from == f"C:{self.positions[0]}/P:{self.positions[0]}",
            f"$all start_from after update {all_info.start_from!r}",
        )
        return {"stream": info.start_from, "all": all_info.start_from}

    def persistent_delete(self) -> str:
        self.db.delete_subscription(self.group, self.stream, timeout=CALL_TIMEOUT)
        self.db.delete_subscription(self.group, timeout=CALL_TIMEOUT)
        expect_raises(
            NotFoundError,
            lambda: self.db.get_subscription_info(self.group, self.stream, timeout=5),
        )
        expect_raises(NotFoundError, lambda: self.db.get_subscription_info(self.group, timeout=5))
        expect_raises(
            NotFoundError,
            lambda: self.db.delete_subscription(self.group, self.stream, timeout=5),
        )
        left = [s for s in self.db.list_subscriptions(timeout=5) if s.group_name == self.group]
        expect(not left, f"still listed: {left}")
        return "deleted both; get_info and delete then raise NotFoundError"

    # ------------------------------------------------------------------ cluster, TLS
    def read_gossip(self) -> list[dict[str, Any]]:
        members = self.db.read_gossip(timeout=5)
        expect(len(members) == 1, f"{len(members)} members")
        member = members[0]
        expect(member.state == "NODE_STATE_LEADER", f"state {member.state}")
        host, _, port = self.db.connection_target.rpartition(":")
        expect((member.address, str(member.port)) == (host, port), f"advertised {member}")
        return [{"state": m.state, "address": m.address, "port": m.port} for m in members]

    def discover_connection(self) -> str:
        scheme = "esdb+discover"
        uri = with_scheme_and_user(self.uri, scheme=scheme)
        with KurrentDBClient(uri) as client:
            position = client.get_commit_position(timeout=5)
            target = client.connection_target
        uri = with_scheme_and_user(self.uri, scheme="kurrentdb")
        with KurrentDBClient(uri) as client:
            expect(client.get_commit_position(timeout=5) == position, "kurrentdb:// scheme")
        return f"{scheme} -> {target}; kurrentdb:// works too"

    def v2_multi_append_unimplemented(self) -> str:
        # multi_append_to_stream uses kurrentdb.protocol.v2 (KurrentDB >= 25.1), which the
        # emulator does not serve, like EventStoreDB <= 24.10: the call must fail at once.
        started = time.monotonic()
        stream = f"probe-{self.run}-v2"
        try:
            self.db.multi_append_to_stream(
                NewEvents(stream, [NewEvent(self.type_a, b"{}")], StreamState.NO_STREAM),
                timeout=5,
            )
        except KurrentDBClientError as e:
            elapsed = time.monotonic() - started
            expect("UNIMPLEMENTED" in str(e) or "Unimplemented" in str(e), f"{e}")
            expect(elapsed < 3, f"took {elapsed:.1f}s")
            expect_raises(NotFoundError, lambda: self.db.get_stream(stream, timeout=5))
            return f"{type(e).__name__} (UNIMPLEMENTED), as EventStoreDB <= 24.10"
        return "served"  # The emulator grew the v2 service: nothing to object to.

    def tls_ca_file(self) -> str:
        expect(self.ca_file, "the connection string has no tlsCaFile")
        without_ca = with_query(self.uri, tlsCaFile=None, tlsVerifyCert=None)
        client = KurrentDBClient(without_ca)
        try:
            e = expect_raises(KurrentDBClientError, lambda: client.get_commit_position(timeout=3))
        finally:
            client.close()
        return f"tlsCaFile accepted; without it -> {type(e).__name__}"

    def tls_bad_credentials(self) -> str:
        bad = with_scheme_and_user(self.uri, userinfo="admin:wrong-password")
        with KurrentDBClient(bad) as client:
            e = expect_raises(
                (UnauthenticatedError, AccessDeniedError),
                lambda: client.get_commit_position(timeout=5),
            )
        return f"{type(e).__name__}: {e}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONNECTION_STRING", file=sys.stderr)
        return 2
    return Probe(argv[1]).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
