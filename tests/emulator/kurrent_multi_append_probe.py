"""Drive the emulator's multi-stream append through kurrentdbclient 1.3.5 (`.venv-kurrent`).

    .venv-kurrent/bin/python tests/emulator/kurrent_multi_append_probe.py URI [--old-server]

Prints one JSON line per check (`{"check": name, "ok": bool, "detail": ...}`); exit status 1
when any failed. `multi_append_to_stream()` sends `kurrentdb.protocol.v2.streams.StreamsService/
AppendSession` and decodes errors from the google.rpc.Status in `grpc-status-details-bin`
(kurrentdbclient/common.py handle_rpc_error), so these checks pin the emulator's wire format to
what the client expects. With --old-server (an emulator started with multi_append=False) only
the "unimplemented" check runs. Nothing here imports the project.
"""

from __future__ import annotations

import json
import sys
import traceback
import uuid
from collections.abc import Callable

from kurrentdbclient import KurrentDBClient, NewEvent, NewEvents, StreamState
from kurrentdbclient.exceptions import (
    KurrentDBClientError,
    MultiAppendToSameStreamError,
    NotFoundError,
    StreamTombstonedError,
    TransactionMaxSizeExceededError,
    WrongCurrentVersionError,
)

TIMEOUT = 10.0


class CheckFailed(AssertionError):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def new_event(type_: str = "Happened", metadata: bytes = b"") -> NewEvent:
    return NewEvent(type=type_, data=b'{"n": 1}', metadata=metadata, id=uuid.uuid4())


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def stream_events(client: KurrentDBClient, stream: str) -> list:
    try:
        return list(client.get_stream(stream, timeout=TIMEOUT))
    except NotFoundError:
        return []


def check_success_and_read_back(client: KurrentDBClient) -> dict:
    a, b = unique("order"), unique("invoice")
    events_a = [new_event("Placed", b'{"tenant": "acme"}'), new_event("Paid")]
    events_b = [new_event("Issued")]
    position = client.multi_append_to_stream(
        [
            NewEvents(stream_name=a, events=events_a, current_version=StreamState.NO_STREAM),
            NewEvents(stream_name=b, events=events_b, current_version=StreamState.ANY),
        ],
        timeout=TIMEOUT,
    )
    read_a, read_b = stream_events(client, a), stream_events(client, b)
    expect([e.id for e in read_a] == [e.id for e in events_a], f"{a} holds {read_a}")
    expect([e.id for e in read_b] == [e.id for e in events_b], f"{b} holds {read_b}")
    expect([e.stream_position for e in read_a] == [0, 1], "revisions 0 and 1")
    expect(read_a[0].type == "Placed" and read_a[0].data == b'{"n": 1}', "type and data kept")
    metadata = json.loads(read_a[0].metadata)
    expect(metadata.get("tenant") == "acme", f"properties in the metadata: {metadata}")
    expect(metadata.get("$schema.name") == "Placed", f"schema name added: {metadata}")
    last = max(e.commit_position or 0 for e in read_a + read_b)
    expect(position == last, f"returned position {position}, last event at {last}")
    expect(client.get_current_version(a, timeout=TIMEOUT) == 1, "current version of a")
    return {"position": position}


def check_exact_revision(client: KurrentDBClient) -> dict:
    a = unique("exact")
    client.append_to_stream(a, current_version=StreamState.NO_STREAM, events=[new_event()])
    client.multi_append_to_stream(
        [NewEvents(stream_name=a, events=[new_event()], current_version=0)], timeout=TIMEOUT
    )
    expect(len(stream_events(client, a)) == 2, "second event appended at revision 0")
    return {}


def check_wrong_expected_version(client: KurrentDBClient) -> dict:
    good, bad = unique("good"), unique("bad")
    client.append_to_stream(bad, current_version=StreamState.NO_STREAM, events=[new_event()])
    try:
        client.multi_append_to_stream(
            [
                NewEvents(
                    stream_name=good, events=[new_event()], current_version=StreamState.NO_STREAM
                ),
                NewEvents(stream_name=bad, events=[new_event()], current_version=5),
            ],
            timeout=TIMEOUT,
        )
    except WrongCurrentVersionError as e:
        expect(e.stream_name == bad, f"stream in the error: {e.stream_name}")
        expect(e.actual_version == 0, f"actual version {e.actual_version}")
        expect(e.expected_version == 5, f"expected version {e.expected_version}")
        expect(stream_events(client, good) == [], "nothing written to the good stream")
        return {"message": str(e)}
    raise CheckFailed("no WrongCurrentVersionError")


def check_no_stream_on_existing(client: KurrentDBClient) -> dict:
    a = unique("exists")
    client.append_to_stream(a, current_version=StreamState.NO_STREAM, events=[new_event()])
    try:
        client.multi_append_to_stream(
            [NewEvents(stream_name=a, events=[new_event()], current_version=StreamState.NO_STREAM)],
            timeout=TIMEOUT,
        )
    except WrongCurrentVersionError as e:
        expect(e.actual_version == 0, f"actual version {e.actual_version}")
        return {}
    raise CheckFailed("no WrongCurrentVersionError")


def check_deleted_stream(client: KurrentDBClient) -> dict:
    dead, other = unique("dead"), unique("other")
    client.append_to_stream(dead, current_version=StreamState.NO_STREAM, events=[new_event()])
    client.tombstone_stream(dead, current_version=StreamState.ANY)
    try:
        client.multi_append_to_stream(
            [
                NewEvents(
                    stream_name=other, events=[new_event()], current_version=StreamState.NO_STREAM
                ),
                NewEvents(stream_name=dead, events=[new_event()], current_version=StreamState.ANY),
            ],
            timeout=TIMEOUT,
        )
    except StreamTombstonedError as e:
        expect(stream_events(client, other) == [], "nothing written to the other stream")
        return {"message": str(e)}
    raise CheckFailed("no StreamTombstonedError")


def check_idempotent_replay(client: KurrentDBClient) -> dict:
    a, b = unique("replay-a"), unique("replay-b")
    batch = [
        NewEvents(
            stream_name=a, events=[new_event(), new_event()], current_version=StreamState.NO_STREAM
        ),
        NewEvents(stream_name=b, events=[new_event()], current_version=StreamState.NO_STREAM),
    ]
    first = client.multi_append_to_stream(batch, timeout=TIMEOUT)
    second = client.multi_append_to_stream(batch, timeout=TIMEOUT)
    expect(first == second, f"replay answered position {second}, first {first}")
    expect(len(stream_events(client, a)) == 2, "no duplicates in a")
    return {}


def check_same_stream_twice(client: KurrentDBClient) -> dict:
    a = unique("twice")
    try:
        client.multi_append_to_stream(
            [
                NewEvents(
                    stream_name=a, events=[new_event()], current_version=StreamState.NO_STREAM
                ),
                NewEvents(
                    stream_name=a.upper(), events=[new_event()], current_version=StreamState.ANY
                ),
            ],
            timeout=TIMEOUT,
        )
    except MultiAppendToSameStreamError:
        expect(stream_events(client, a) == [], "nothing written")
        return {}
    raise CheckFailed("no MultiAppendToSameStreamError")


def check_transaction_too_large(client: KurrentDBClient) -> dict:
    a = unique("large")
    big = NewEvent(type="Big", data=b"x" * 700_000, id=uuid.uuid4())
    big2 = NewEvent(type="Big", data=b"x" * 700_000, id=uuid.uuid4())
    try:
        client.multi_append_to_stream(
            [NewEvents(stream_name=a, events=[big, big2], current_version=StreamState.NO_STREAM)],
            timeout=TIMEOUT,
        )
    except TransactionMaxSizeExceededError as e:
        expect(e.max_size == 1_048_576, f"max size {e.max_size}")
        return {}
    raise CheckFailed("no TransactionMaxSizeExceededError")


def check_unimplemented(client: KurrentDBClient) -> dict:
    try:
        client.multi_append_to_stream(
            [
                NewEvents(
                    stream_name=unique("old"),
                    events=[new_event()],
                    current_version=StreamState.NO_STREAM,
                )
            ],
            timeout=TIMEOUT,
        )
    except KurrentDBClientError as e:
        return {"error": type(e).__name__}
    raise CheckFailed("an old server accepted a multi-stream append")


CHECKS: dict[str, Callable[[KurrentDBClient], dict]] = {
    "success_and_read_back": check_success_and_read_back,
    "exact_revision": check_exact_revision,
    "wrong_expected_version": check_wrong_expected_version,
    "no_stream_on_existing": check_no_stream_on_existing,
    "deleted_stream": check_deleted_stream,
    "idempotent_replay": check_idempotent_replay,
    "same_stream_twice": check_same_stream_twice,
    "transaction_too_large": check_transaction_too_large,
}


def main() -> int:
    uri = sys.argv[1]
    checks = {"unimplemented": check_unimplemented} if "--old-server" in sys.argv else CHECKS
    client = KurrentDBClient(uri)
    failed = 0
    try:
        for name, check in checks.items():
            try:
                detail = check(client)
                print(json.dumps({"check": name, "ok": True, "detail": detail}), flush=True)
            except Exception as e:
                failed += 1
                detail = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
                print(json.dumps({"check": name, "ok": False, "detail": detail}), flush=True)
    finally:
        client.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
