"""A tombstoned stream with a non-ASCII name reads as tombstoned, and a resumed job passes it.

A real node cannot send the `stream-name` trailer of StreamDeleted for a name like
`ünï.strm-1`: Kestrel refuses it and the client sees UNKNOWN "Received http2 header with
status: 500" (tests/emulator/test_odd_names.py; the emulator answers the same). The relay's
stream reads (core/eventstore/client.py) then ask `$all`, whose records carry no stream name
in a trailer, whether the stream ends with its tombstone (`$streamDeleted` at revision
long.MaxValue), and only then answer as for any tombstoned stream. A process that resumes a
job searches the source stream for the target's last event (core/engine/locate.py) and reads
the target stream's tail: before, every such slice failed with that HTTP 500, forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from esdbclient import EventStoreDBClient
from esdbclient.exceptions import UnknownError

from core.errors import PermanentError, StreamTombstoned
from core.eventstore import EventStore
from core.model import DELETED_STREAM
from esdb_emulator import Emulator
from esdb_emulator.headers import HTTP_500
from esdb_emulator.store import ANY, JSON, ProposedEvent, Store
from tests import oracle
from tests.reliability.soak import run_soak

ROOT = Path(__file__).parents[2]
CHILD = ROOT / "tests" / "crash" / "relay_child.py"
ODD = "ünï.strm-1"
PLAIN = "plain-tomb"
pytestmark = pytest.mark.timeout(240)


def event() -> ProposedEvent:
    return ProposedEvent(str(uuid.uuid4()), "Happened", JSON, b"{}", b"{}")


def tombstoned(store: Store, name: str, events: int = 3) -> None:
    store.set_metadata(name, {"custom": name})
    store.append(name, ANY, [event() for _ in range(events)])
    store.tombstone(name, ANY)


def outcome(call) -> object:
    try:
        return ("value", call())
    except StreamTombstoned:
        return "tombstoned"


def test_every_stream_read_of_a_tombstoned_non_ascii_stream_says_tombstoned(pair):
    source, _ = pair
    tombstoned(source.store, ODD)
    tombstoned(source.store, PLAIN)
    tombstoned(source.store, "line-end\n")  # Kestrel refuses a newline too
    # What a real node answers: HTTP 500, not StreamIsDeleted.
    client = EventStoreDBClient(source.uri)
    try:
        with pytest.raises(UnknownError) as raised:
            client.get_stream(ODD, timeout=5)
        call = raised.value.args[0]
        assert (call.code(), call.details()) == (grpc.StatusCode.UNKNOWN, HTTP_500)
    finally:
        client.close()
    with EventStore(source.uri, side="source") as es:
        for name in (ODD, PLAIN, "line-end\n"):
            assert outcome(lambda n=name: es.read_stream(n)) == "tombstoned", name
            assert outcome(lambda n=name: es.read_stream(n, from_revision=1, limit=1)) == (
                "tombstoned"
            )
            assert outcome(lambda n=name: es.read_stream_backwards(n, None, 5)) == "tombstoned"
            assert outcome(lambda n=name: es.read_stream_backwards("$$" + n, None, 1)) == (
                "tombstoned"
            )
            assert outcome(lambda n=name: es.stream_metadata(n)) == "tombstoned"
            tail = es.stream_tail(name, 1)
            assert (tail.events, tail.last_revision, tail.tombstoned) == ((), DELETED_STREAM, True)
            es.tombstone(name)  # already done
            assert outcome(lambda n=name: es.delete(n)) == "tombstoned"


def test_an_http_500_stays_an_error_unless_all_shows_the_tombstone(pair):
    source, _ = pair
    source.store.append(ODD, ANY, [event() for _ in range(3)])  # live
    source.store.append("ünï.soft-1", ANY, [event() for _ in range(3)])
    source.store.delete("ünï.soft-1", ANY)  # soft-deleted: `$all` holds no tombstone of it
    tombstoned(source.store, "ünï.gone-1")
    tombstoned(source.store, PLAIN)
    faults = source.faults

    def reads(call, shown: str | None) -> int:
        """The Read calls `call` made; it must fail with the HTTP 500 as it is, saying what
        `$all` showed (None: `$all` not asked)."""
        before = faults.calls.get("Read", 0)
        with pytest.raises(PermanentError) as raised:
            call()
        assert raised.value.message.endswith(f"failed: UNKNOWN: {HTTP_500}")  # not a repr
        if shown is None:
            assert not raised.value.hint
        else:
            assert f"tombstoned, but {shown}" in raised.value.hint
        return faults.calls["Read"] - before

    with EventStore(source.uri, side="source", timeout=5) as es:
        for name in (ODD, "ünï.soft-1"):
            faults.update(http_500_next=1, methods={"Read"})
            # The stream, then `$all`.
            assert reads(lambda n=name: es.read_stream(n), "$all holds no tombstone") == 2
        # The search itself fails, or outlasts the read's timeout: the read's error stands.
        faults.update(http_500_next=2, methods={"Read"})
        shown = "the search of $all for its tombstone failed (source: search $all"
        assert reads(lambda: es.stream_tail("ünï.gone-1", 1), shown) == 2
        faults.update(http_500_next=1, deadline_next=1, methods={"Read"})
        shown = "the search of $all for its tombstone outlasted the 5 s timeout"
        assert reads(lambda: es.read_stream_backwards("ünï.gone-1", None, 1), shown) == 2
        # A name the server can send in a trailer: a 500 is not about it, nothing is checked.
        faults.update(http_500_next=1, methods={"Read"})
        assert reads(lambda: es.read_stream(PLAIN), None) == 1
        assert es.read_stream(ODD)[-1].revision == 2
        # Found once, a tombstone is remembered: the server is not asked again.
        assert es.stream_tail("ünï.gone-1", 1).tombstoned
        before = faults.calls["Read"]
        with pytest.raises(StreamTombstoned):
            es.read_stream("ünï.gone-1")
        assert es.stream_metadata("ünï.soft-1") == {"$tb": DELETED_STREAM}
        assert faults.calls["Read"] - before == 1  # the metadata of the soft-deleted one


def odd_history(store: Store) -> None:
    """A tombstoned non-ASCII stream (with metadata) interleaved with plain streams."""
    store.set_metadata(ODD, {"custom": ODD})
    for i in range(6):
        store.append(ODD, ANY, [event()])
        store.append(f"plain-{i}", ANY, [event()])
    store.tombstone(ODD, ANY)
    for i in range(3):
        store.append(f"after-{i}", ANY, [event()])


@pytest.mark.parametrize(
    ("step", "budget", "searched"),
    [
        # Killed once the first slice committed: the next process's slice finds the target
        # stream's last event before it and searches the source stream for it.
        ("committed", 5, "source"),
        # Killed before committing the only slice, all of it written: the next process's
        # slice reads the tail of the target stream, tombstoned there.
        ("commit", 1000, "target"),
    ],
)
def test_a_killed_process_resumes_past_a_tombstoned_non_ascii_stream(
    tmp_path, step, budget, searched
):
    with Emulator() as source, Emulator() as target:
        odd_history(source.store)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ESDB_RELAY_JOB_ID": f"odd-tomb-{searched}",
            "ESDB_RELAY_SOURCE": source.uri,
            "ESDB_RELAY_TARGET": target.uri,
            "ESDB_RELAY_CHECKPOINT_STORE": f"sqlite:///{tmp_path}/cp.db",
            "ESDB_RELAY_BUDGET__MAX_EVENTS": str(budget),
            "ESDB_RELAY_LEASE_TTL_SECONDS": "2",
        }

        def child(*args: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [sys.executable, str(CHILD), *args],
                env=env,
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )

        assert child(step, "1").returncode == -signal.SIGKILL
        assert target.store.stream_names().count(ODD) == 1  # the target holds part of it
        resumed = child("none", "0")
        assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
        report = oracle.compare(source.store, target.store, oracle.Job(multi_append=True))
        assert report.clean, report
        assert report.events_checked


def test_kill_soak_with_tombstoned_non_ascii_streams():
    """The short kill soak (tests/reliability/soak.py: real relay processes SIGKILLed at
    seeded points, source writes between runs, the oracle and verify at the end) over a
    workload with `ünï.strm-…` streams, the first tombstoned. Before, a resumed process
    failed on it with the HTTP 500 (at run 8 of this seed)."""
    report = run_soak(15, seed=11, odd_streams=2, slice_events=100, append_events=20)
    assert report.kills == 15
    assert report.events_checked > 2000
    assert (report.differences, report.duplicates, report.missing) == (0, 0, 0)
    assert report.clean and report.verify_agrees, report
