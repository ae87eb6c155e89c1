"""Property-based tests of ordered mode writing through KurrentDB's multi-stream append: the
random histories, settings and faults of test_properties.py, with UNAVAILABLE injected into the
multi-stream appends too.

The oracle is test_properties.py's and the `$all` order is kept, except for event metadata: the
server stores a v2 append's metadata as properties and shows it back as JSON with
`$schema.name` / `$schema.format` added, so it is compared by value without those keys.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from esdb_emulator.store import Record
from tests.engine.test_properties import (
    Case,
    apply_history,
    assert_global_order,
    cases,
    check_metadata,
)
from tests.engine.test_properties_partitioned import check, emulators, replicate, workdir

__all__ = ["emulators", "workdir"]  # the module-scoped fixtures


def rebuilt(record: Record) -> dict | None:
    """The record as written before a v2 append re-rendered its metadata (None if it was not)."""
    try:
        value = json.loads(record.metadata)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or value.get("$schema.name") != record.type:
        return None
    value.pop("$schema.name")
    value.pop("$schema.format", None)
    return value


def check_metadata_by_value(case: Case, source: Record, target: Record) -> None:
    value = rebuilt(target)
    if value is None:  # written by a single-stream append: byte for byte
        check_metadata(case, source, target)
        return
    where = f"{source.stream}@{source.revision}"
    original = json.loads(source.metadata) if source.metadata.strip() else {}
    assert isinstance(original, dict), where  # only JSON objects can go in a v2 append
    extra = {k: v for k, v in value.items() if k not in original}
    assert {k: v for k, v in value.items() if k in original} == original, where
    if case.original_metadata:
        assert extra.get("$originalPosition") == source.position, where
        assert extra.get("$originalStreamRevision") == source.revision, where
    else:
        assert extra == {}, where


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
def test_target_equals_filtered_source_with_multi_append(emulators, workdir, case):
    source, target = emulators[0].store, emulators[1].store
    history = apply_history(source, case)
    replicate(emulators, workdir, case, history, multi_append=True)
    check(source, target, case, history, check_metadata_by_value)
    assert_global_order(source, target, case, history)  # ordered mode keeps `$all` order
