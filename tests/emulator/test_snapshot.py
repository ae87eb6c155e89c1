"""File-backed snapshots: the emulator's data survives a stop/start; a bad file fails clearly."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest
from esdbclient import EventStoreDBClient, NewEvent, StreamState
from esdbclient.exceptions import NotFound, StreamIsDeleted

from esdb_emulator import Emulator
from esdb_emulator.snapshot import FORMAT, VERSION, SnapshotError


def ev(type_: str = "OrderCreated", data: bytes = b"{}") -> NewEvent:
    return NewEvent(type=type_, data=data, metadata=b'{"m": 1}')


def connect(db: Emulator) -> EventStoreDBClient:
    return EventStoreDBClient(db.uri)


def test_data_survives_stop_and_start(tmp_path: Path) -> None:
    path = tmp_path / "data" / "emulator.snap"
    kept, soft, hard = "order-kept", "order-soft", "order-hard"
    events = [ev("A"), ev("B", b"\x00\xff binary"), ev("C")]
    with Emulator(snapshot_path=path) as db:
        c = connect(db)
        try:
            c.append_to_stream(kept, current_version=StreamState.NO_STREAM, events=events)
            c.set_stream_metadata(kept, metadata={"$maxCount": 2, "owner": "me"})
            c.append_to_stream(soft, current_version=StreamState.NO_STREAM, events=[ev()])
            c.delete_stream(soft, current_version=0)
            c.append_to_stream(hard, current_version=StreamState.NO_STREAM, events=[ev()])
            c.tombstone_stream(hard, current_version=0)
            before = list(c.read_all(filter_exclude=[]))
            end = c.get_commit_position(filter_exclude=[])
        finally:
            c.close()
    assert path.exists()

    with Emulator(snapshot_path=path) as db:
        c = connect(db)
        try:
            after = list(c.read_all(filter_exclude=[]))
            assert after == before  # ids, types, data, metadata, positions, timestamps
            assert [e.id for e in c.get_stream(kept)] == [e.id for e in events[1:]]
            assert c.get_stream_metadata(kept)[0] == {"$maxCount": 2, "owner": "me"}
            with pytest.raises(NotFound):
                c.get_stream(soft)
            with pytest.raises(StreamIsDeleted):
                c.get_stream(hard)
            with pytest.raises(StreamIsDeleted):
                c.append_to_stream(hard, current_version=StreamState.ANY, events=[ev()])
            # Soft-deleted revisions continue; positions continue after the old end.
            c.append_to_stream(soft, current_version=StreamState.NO_STREAM, events=[ev()])
            assert c.get_stream(soft)[0].stream_position == 1
            position = c.append_to_stream(kept, current_version=2, events=[ev("D")])
            assert position > end
            # Idempotency survives: the same event id is not written twice.
            assert c.append_to_stream(kept, current_version=0, events=events[1:]) == (
                before[[e.id for e in before].index(events[2].id)].commit_position
            )
            assert c.get_current_version(kept) == 3
        finally:
            c.close()


def test_save_snapshot_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "explicit.snap"
    with Emulator() as db:
        c = connect(db)
        try:
            c.append_to_stream("s", current_version=StreamState.NO_STREAM, events=[ev(), ev()])
        finally:
            c.close()
        assert db.save_snapshot(path) == 5  # 3 seeded system records + 2
        with pytest.raises(ValueError, match="no snapshot path"):
            db.save_snapshot()
    with Emulator(snapshot_path=path) as db:
        c = connect(db)
        try:
            assert len(c.get_stream("s")) == 2
        finally:
            c.close()
        assert db.save_snapshot() == 5  # defaults to the emulator's own path


def test_missing_snapshot_starts_empty_and_is_written_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "new.snap"
    with Emulator(snapshot_path=path) as db:
        assert len(db.store) == 3
    assert path.exists()
    assert not path.with_name(path.name + ".tmp").exists()


def _write_snapshot(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


HEADER = json.dumps({"format": FORMAT, "version": VERSION, "next_position": 1000})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("not gzip", b"this is not a snapshot"),
        ("empty", b""),
        ("truncated gzip", None),
        ("bad json header", ["{not json"]),
        ("header not an object", ["[1, 2, 3]"]),
        ("other format", [json.dumps({"format": "something-else", "version": VERSION})]),
        ("other version", [json.dumps({"format": FORMAT, "version": VERSION + 1})]),
        ("no next_position", [json.dumps({"format": FORMAT, "version": VERSION})]),
        ("bad record", [HEADER, '["s", 0, "id"]']),
        ("record not a list", [HEADER, "null"]),
        ("bad base64", [HEADER, json.dumps(["s", 0, str(uuid.uuid4()), "T", "c", "!", "", 0, 0])]),
    ],
)
def test_corrupt_snapshot_raises_snapshot_error(
    tmp_path: Path, name: str, content: bytes | list[str] | None
) -> None:
    path = tmp_path / "corrupt.snap"
    if content is None:
        with Emulator() as db:
            db.save_snapshot(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write_snapshot(path, content)
    db = Emulator(snapshot_path=path)
    with pytest.raises(SnapshotError) as info:
        db.start()
    assert str(path) in str(info.value)
    assert db._server is None  # nothing was started
    db.stop()  # a no-op, and it must not overwrite the bad file
    assert path.exists()


def test_snapshot_error_leaves_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.snap"
    path.write_bytes(b"garbage")
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        Emulator(snapshot_path=path).start()
    assert path.read_bytes() == b"garbage"
