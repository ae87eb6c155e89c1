"""The relay's `$all` read through the generated stub (core/eventstore/reads.py), against the
emulator over real gRPC: the same `Event`s as esdbclient's read, decoded on the reading
thread, and a read cut by esdbclient's reconnect read again rather than taken as the end. And
a shard's scan (core/eventstore/scans.py, `EventStore.scan_all_after`): which streams a
stream-name regex passes, every kind of record of them, odd names included, and a shard
plan's regexes splitting the log exactly."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
from esdbclient import EventStoreDBClient

import core.eventstore.internals as internals
import core.eventstore.reads as reads
import core.eventstore.scans as scans
from core.eventstore import EventStore, Scanned
from core.eventstore.client import _event
from core.model import Event
from core.shards import plan_shards
from esdb_emulator import Emulator
from esdb_emulator.store import ANY, ProposedEvent
from esdb_emulator.workload import Workload, generate
from tests.engine.test_shards import ODD_NAMES

ODD_METADATA = (
    b"",
    b"   ",
    b"\x00\xffbinary",
    b'{"x": NaN}',
    b'{"big": 123456789012345678901234567890}',
    '{"u": 1}'.encode("utf-16"),
    '{"ünï": "cödé"}'.encode(),
    b"[1, 2]",
)


@pytest.fixture
def db():
    with Emulator() as emulator:
        # Payloads past HTTP/2's flow-control window: a read is still in flight after 10 records.
        generate(
            emulator.store,
            Workload(events=200, streams=12, min_payload=4000, max_payload=8000, seed=3),
        )
        for i, metadata in enumerate(ODD_METADATA):
            emulator.store.append(
                f"odd-ström-{i}",
                -1,
                [
                    ProposedEvent(
                        str(uuid.uuid4()), "Odd", "application/octet-stream", b"\x01", metadata
                    )
                ],
            )
        emulator.store.tombstone("odd-ström-0", 0)
        emulator.store.set_metadata("odd-ström-1", {"$maxCount": 5, "custom": "ü"})
        for name in ODD_NAMES:  # regex metacharacters, control characters, `$`, one letter
            emulator.store.set_metadata(name, {"custom": name})
            emulator.store.append(
                name, ANY, [ProposedEvent(str(uuid.uuid4()), "Odd", "application/json", b"{}")]
            )
        yield emulator


def test_the_read_gives_the_events_esdbclient_gives(db):
    """Every field of every record (system records, metadata streams, tombstones, links,
    odd metadata bytes, non-ASCII names, the `created` instant to the microsecond)."""
    client = EventStoreDBClient(db.uri)
    try:
        expected = [_event(r) for r in client.read_all(filter_exclude=[])]
    finally:
        client.close()
    with EventStore(db.uri, side="source") as store:
        found = list(store.read_all_after(None, 10_000))
        assert found == expected
        assert {e.type for e in found} >= {"$metadata", "$streamDeleted", "$>", "Odd"}
        middle = found[len(found) // 2].commit_position
        assert list(store.read_all_after(middle, 10_000)) == [
            e for e in expected if e.commit_position > middle
        ]
        assert (
            list(store.read_all_after(middle, 3))
            == [e for e in expected if e.commit_position > middle][:3]
        )


def test_records_are_decoded_on_the_reading_thread(db, monkeypatch):
    """gRPC's default streaming call receives each message on the channel's spin thread and
    hands it over (~20 µs of CPU a record here); the relay's read receives them itself."""
    threads: set[int] = set()
    decode = reads.streams_pb2.ReadResp.FromString

    def spying(data: bytes) -> object:
        threads.add(threading.get_ident())
        return decode(data)

    monkeypatch.setattr(reads, "decode_response", spying)
    with EventStore(db.uri, side="source") as store:
        assert len(list(store.read_all_after(None, 50))) == 50
    assert threads == {threading.get_ident()}


def test_a_read_cut_by_a_reconnect_is_read_again(db):
    """esdbclient reconnects (another thread's UNAVAILABLE or not-leader) by closing the
    channel under the calls in flight: the cut read raises, is retried after the last record
    it gave, and nothing is skipped or given twice."""
    with EventStore(db.uri, side="source") as store:
        everything = list(store.read_all_after(None, 10_000))
        read = store.read_all_after(None, 10_000)
        found = [next(read) for _ in range(10)]
        store._client.reconnect()  # closes the channel the read is on
        found.extend(read)
        assert found == everything
        assert store.retries >= 1


def test_a_read_begun_on_a_channel_a_reconnect_just_closed_is_read_again(db, monkeypatch):
    """The race of another thread's reconnect between taking the channel and starting the
    call (simulated: the read is handed the channel the reconnect closed, once): grpcio
    refuses with ValueError, which is a transient failure, not the end of the slice."""
    with EventStore(db.uri, side="source") as store:
        everything = list(store.read_all_after(None, 10_000))
        stale = internals.channel(store._client)
        store._client.reconnect()  # closes `stale`
        current = internals.channel
        handed: list[object] = []

        def channel(client: object) -> object:
            handed.append(client)
            return stale if len(handed) == 1 else current(client)

        monkeypatch.setattr(internals, "channel", channel)
        assert list(store.read_all_after(None, 10_000)) == everything
        assert store.retries == 1


def scanned(store: EventStore, regex: str, after: int | None = None) -> list[Event]:
    """Every record a shard's scan of `$all` after `after` gives, up to its caught-up mark
    (the emulator sends one, as KurrentDB does)."""
    scan = store.scan_all_after(after, regex, time.monotonic() + 60)
    found: list[Event] = []
    try:
        for item in scan:
            if isinstance(item, Scanned):
                if item.caught_up:
                    return found
            else:
                found.append(item)
    finally:
        scan.close()
    raise AssertionError(f"the scan by {regex!r} ended before it caught up: {len(found)} read")


@pytest.mark.parametrize("window", [7, scans.SCAN_WINDOW])
def test_a_scan_gives_the_records_of_the_streams_its_regex_passes(db, monkeypatch, window):
    """A stream-name regex (searched, not matched whole: the server's .NET `Regex.IsMatch`)
    passes every kind of record of its streams — metadata streams, tombstones, system
    streams, odd names — however far apart in `$all`, over many of the server's pages and
    checkpoints (a small window) or one; a scan after a position resumes strictly after it."""
    monkeypatch.setattr(scans, "SCAN_WINDOW", window)
    with EventStore(db.uri, side="source") as store:
        everything = list(store.read_all_after(None, 10_000))
        for regex in (
            r"ström\-[13]$",
            r"^\$",
            r"^(?![\s\S]*(?:1|3)$)",
            "(?!)",
            r"\(\.\*\)",  # the stream named `regex(.*)[a]{2}|^$`, by its metacharacters
            "\n$",
            "\t",
        ):
            wanted = [e for e in everything if re.search(regex, e.stream)]
            assert scanned(store, regex) == wanted, regex
            if len(wanted) > 2:
                first = wanted[0].commit_position
                assert scanned(store, regex, first) == wanted[1:], regex
        # Searched: a regex that matches inside names, none of them whole.
        assert not [e for e in everything if re.fullmatch("ström", e.stream)]
        passed = scanned(store, "ström")
        assert passed == [e for e in everything if "ström" in e.stream]
        assert {e.type for e in passed} >= {"$metadata", "$streamDeleted", "Odd"}
        assert {e.stream for e in scanned(store, "ünï|Ω$")} == {
            "ünï-çødé-1",
            "naïve-Ω",
            "$$ünï-çødé-1",
            "$$naïve-Ω",
        }


def test_a_shard_plans_regexes_split_the_log_exactly(db):
    """Every record, odd names and system records included, is scanned by exactly one shard
    of a plan made from the log's counts."""
    with EventStore(db.uri, side="source") as store:
        everything = list(store.read_all_after(None, 10_000))
        counts: dict[str, int] = {}
        for e in everything:
            counts[e.stream] = counts.get(e.stream, 0) + 1
        plan = plan_shards(counts, 3, exact=True)
        read = [scanned(store, r) for r in plan.regexes]
        assert sorted((e for shard in read for e in shard), key=lambda e: e.commit_position) == (
            everything
        )
        assert all(shard for shard in read)


def test_the_emulator_counts_a_filtered_read_as_the_server_does(db):
    """Through esdbclient's own filtered read: `limit` counts the records that pass the
    filter, not the records scanned (the search window bounds only the server's pages)."""
    client = EventStoreDBClient(db.uri)
    try:
        everything = list(client.read_all(filter_exclude=[]))
        wanted = [r for r in everything if r.stream_name.startswith("odd-")]
        found = list(
            client.read_all(filter_include=["odd-.*"], filter_by_stream_name=True, limit=3)
        )
        assert [r.id for r in found] == [r.id for r in wanted[:3]]
        found = list(client.read_all(filter_include=["odd-.*"], filter_by_stream_name=True))
        assert [r.id for r in found] == [r.id for r in wanted]
    finally:
        client.close()
