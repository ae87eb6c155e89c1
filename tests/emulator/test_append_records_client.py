"""Our esdbclient adapter's AppendRecords (KurrentDB 26.1): `EventStore.append_records` against
the emulator started as 26.1, 25.1 and 24.10 (real gRPC, the real esdbclient channel)."""

from __future__ import annotations

import uuid

import pytest

from core.errors import AppendTooLarge, MultiAppendConflict, MultiAppendUnsupported
from core.eventstore import EventStore
from core.model import NO_STREAM, OutEvent, StreamAppend
from esdb_emulator import Emulator
from esdb_emulator.faults import FaultConfig


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _event(metadata: bytes = b"") -> OutEvent:
    return OutEvent(uuid.uuid4(), "Happened", "application/json", b'{"x":1}', metadata)


@pytest.mark.parametrize(
    ("version", "session", "records"),
    [("24.10", False, False), ("25.1", True, False), ("26.1", True, True)],
)
def test_feature_detection_follows_the_server_version(
    version: str, session: bool, records: bool
) -> None:
    with Emulator(server_version=version) as db, EventStore(db.uri, side="target") as es:
        assert es.supports_multi_append() is session
        assert es.supports_append_records() is records


def test_records_of_several_streams_keep_their_interleaving_in_all() -> None:
    with Emulator(server_version="26.1") as db, EventStore(db.uri, side="target") as es:
        a, b = _name("a"), _name("b")
        events = [_event() for _ in range(5)]
        order = [a, b, a, a, b]
        position = es.append_records(
            list(zip(order, events, strict=True)), {a: NO_STREAM, b: NO_STREAM}
        )
        written = [r for r in db.store.iter_all() if r.stream in (a, b)]
        assert position == written[-1].position
        assert [(r.stream, r.event_id) for r in written] == [
            (s, str(e.event_id)) for s, e in zip(order, events, strict=True)
        ]
        assert [e.event_id for e in es.read_stream(a)] == [events[i].event_id for i in (0, 2, 3)]
        # The same records at the same revisions again: an idempotent replay, nothing written.
        again = es.append_records(
            list(zip(order, events, strict=True)), {a: NO_STREAM, b: NO_STREAM}
        )
        assert again == position
        assert len(es.read_stream(a)) == 3 and len(es.read_stream(b)) == 2


def test_a_failed_check_names_every_failing_stream_and_writes_nothing() -> None:
    with Emulator(server_version="26.1") as db, EventStore(db.uri, side="target") as es:
        a, b, c, gone = _name("a"), _name("b"), _name("c"), _name("gone")
        es.append(a, NO_STREAM, [_event(), _event()])  # at revision 1
        es.append(gone, NO_STREAM, [_event()])
        es.tombstone(gone)
        head = db.store.head_position
        with pytest.raises(MultiAppendConflict) as caught:
            es.append_records(
                [(a, _event()), (b, _event()), (gone, _event()), (c, _event())],
                {a: 0, b: NO_STREAM, gone: 0, c: 5},
            )
        assert caught.value.streams == {a: 1, gone: None, c: None}
        assert "tombstoned" in str(caught.value) and "nothing was written" in str(caught.value)
        assert db.store.head_position == head


def test_too_large_and_unsupported() -> None:
    faults = FaultConfig(max_append_size=2_000)
    with (
        Emulator(server_version="26.1", faults=faults) as db,
        EventStore(db.uri, side="target") as es,
    ):
        a, b = _name("a"), _name("b")

        def big(size: int) -> OutEvent:
            return OutEvent(uuid.uuid4(), "Big", "application/octet-stream", b"x" * size, b"")

        # Over the maximum append size: the handler says so, with the limit.
        with pytest.raises(AppendTooLarge) as caught:
            es.append_records([(a, big(1_200)), (b, big(1_200))], {a: NO_STREAM, b: NO_STREAM})
        assert caught.value.limit == 2_000
        # Over 1.5 x that: the server refuses the message before the handler (RESOURCE_EXHAUSTED).
        with pytest.raises(AppendTooLarge, match="size of message") as caught:
            es.append_records([(a, big(1_600)), (b, big(1_600))], {a: NO_STREAM, b: NO_STREAM})
        assert caught.value.limit is None
        assert es.read_stream(a) == [] and es.read_stream(b) == []
        # What the v2 API cannot carry, or two names the server would take for one stream.
        with pytest.raises(MultiAppendUnsupported, match="not empty or a JSON object"):
            es.append_records([(a, _event(b"[1]"))], {a: NO_STREAM})
        with pytest.raises(MultiAppendUnsupported, match="differ only in case"):
            es.append_records(
                [(a, _event()), (a.upper(), _event())], {a: NO_STREAM, a.upper(): NO_STREAM}
            )
    with Emulator(server_version="25.1") as db, EventStore(db.uri, side="target") as es:
        a = _name("a")
        with pytest.raises(MultiAppendUnsupported, match=r"26\.1"):
            es.append_records([(a, _event())], {a: NO_STREAM})
        assert es.supports_append_records() is False
        assert es.read_stream(a) == []


@pytest.mark.parametrize("version", ["25.1", "26.1"])
def test_metadata_no_v2_append_can_carry_is_unsupported_and_says_why(version: str) -> None:
    """A JSON string escaping half a surrogate pair parses, and no UTF-8 string holds it: the
    adapter refuses the multi-stream append saying why (the engine then goes by the v1 append,
    byte for byte), rather than failing on its own request (AppendRecords: an unbound name;
    AppendSession: a session sent without messages)."""
    lone = _event(b'{"lone": "\\ud800"}')
    with Emulator(server_version=version) as db, EventStore(db.uri, side="target") as es:
        a, b = _name("a"), _name("b")
        with pytest.raises(MultiAppendUnsupported, match="lone surrogate"):
            if version == "26.1":
                es.append_records([(a, _event()), (b, lone)], {a: NO_STREAM, b: NO_STREAM})
            else:
                es.multi_append(
                    [StreamAppend(a, NO_STREAM, [_event()]), StreamAppend(b, NO_STREAM, [lone])]
                )
        assert es.read_stream(a) == [] and es.read_stream(b) == []
