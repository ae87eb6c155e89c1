"""The `$original*` keys the relay inserts are formatted directly (core/rules.py, once per
copied event): byte for byte what the JSON encoder gave for them, so targets copied before
and after read the same metadata (docs/reliability.md, "What arrives on the target")."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core import rules
from core.model import Event


def _reference(event: Event) -> bytes:
    keys = {
        rules.ORIGINAL_REVISION: event.revision,
        rules.ORIGINAL_POSITION: event.commit_position,
        rules.ORIGINAL_CREATED: event.created.isoformat() if event.created else None,
    }
    return json.dumps(keys, separators=(",", ":"), ensure_ascii=False)[1:-1].encode()


@pytest.mark.parametrize(
    "created",
    [
        None,
        datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2026, 1, 2, 3, 4, 5),  # naive, as a transform may make one
    ],
)
@pytest.mark.parametrize(
    ("revision", "position"), [(0, 0), (7, 123_456), (2**62, 2**63 - 1), (2**64, 10**30)]
)
def test_the_keys_are_the_bytes_the_json_encoder_gave(created, revision, position):
    event = Event("s", revision, uuid.uuid4(), "T", "application/json", b"{}", b"", created,
                  position, position)  # fmt: skip
    members, keys = rules._provenance(event)
    assert members == _reference(event)
    assert keys == json.loads(b"{" + members + b"}"), "the object the v2 builder is handed"
    metadata = rules.add_original_metadata(b'{"a": 1}', event)
    assert metadata == b'{"a": 1,' + _reference(event) + b"}"
    assert json.loads(metadata)[rules.ORIGINAL_POSITION] == position
