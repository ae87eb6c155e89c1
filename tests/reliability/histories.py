"""Event metadata as real users have it, for the soaks: data migrated before (by esdb-relay or
another tool) whose metadata already carries `$original*` keys larger, smaller or equal to the
event's real place; `$schema.*` keys; JSON padded with whitespace or in any key order; JSON
scalars; bytes that are not JSON."""

from __future__ import annotations

import contextlib
import json
import random
import uuid

from esdb_emulator.store import ANY, JSON, ProposedEvent, Store, StreamDeleted

EQUAL = object()  # the event's own position and revision, known only when it is appended

SHAPES: list[object] = [
    b"",
    b'{"correlationId": "c-1"}',
    b'{"$originalPosition": 1000000000000000, "$originalStreamRevision": 1000000}',
    b'{"$originalStreamRevision": 0, "$originalPosition": 1, "$originalCreated": "2020-01-01"}',
    EQUAL,
    b'{"$schema.name": "user-set", "x": 1}',
    b'{"$schema.format": "Json", "$schema.name": "LiveEvent"}',
    b'  {"padded": true}  \n',
    b'{"z": 1, "a": {"y": [1, 2]}, "m": null }',
    b"42",
    b'"text"',
    b"  ",
    b"\x00\xffbinary",
    b'{"big": 9007199254740993}',
]


def append_odd(store: Store, stream: str, rng: random.Random, type_: str = "LiveEvent") -> None:
    """One event with metadata of a random shape (an EQUAL claim names its real place)."""
    shape = rng.choice(SHAPES)
    if shape is EQUAL:
        revision = store.stream_state(stream)[0] + 1
        metadata = json.dumps(
            {"$originalStreamRevision": revision, "$originalPosition": store.head_position}
        ).encode()
    else:
        assert isinstance(shape, bytes)
        metadata = shape
    event = ProposedEvent(
        str(uuid.UUID(int=rng.getrandbits(128))),
        type_,
        JSON,
        json.dumps({"n": rng.randrange(10**6)}).encode(),
        metadata,
    )
    with contextlib.suppress(StreamDeleted):  # a tombstoned stream takes no more events
        store.append(stream, ANY, [event])
