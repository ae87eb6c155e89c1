"""How ordered mode groups a slice's ops for KurrentDB 26.1's AppendRecords
(core.engine.batching.record_batches): `$all` order, streams coming back within a batch, the
batch limits, and the barriers (metadata, tombstones, names differing only in case)."""

from __future__ import annotations

import uuid

from core import rules
from core.engine.batching import ordered_batches, record_batches
from core.engine.plan import EventOp, MetadataOp, Op, SkipOp, TombstoneOp
from core.model import Event


def _event(stream: str, position: int, metadata: bytes = b"") -> Event:
    return Event(stream, 0, uuid.uuid4(), "Happened", "application/json", b"{}", metadata, None,
                 position, position)  # fmt: skip


def _op(stream: str, position: int, kind: type[Op] = EventOp, metadata: bytes = b"") -> Op:
    event = _event(stream, position, metadata)
    events = [] if kind in (SkipOp, TombstoneOp) else [rules.out_event(event, with_original=False)]
    return kind(event, events)


def _streams(groups: list[list[Op]]) -> list[list[str]]:
    return [[op.source.stream for op in group] for group in groups]


def test_streams_come_back_within_one_batch_in_all_order():
    ops = [_op(s, i) for i, s in enumerate("abacabca")]
    assert _streams(list(record_batches(ops, 500, 10**6))) == [list("abacabca")]
    # the 25.1 path ends a batch wherever a stream comes back
    assert len(list(ordered_batches(ops, 500, 10**6))) > 1


def test_the_batch_limits_split_in_order():
    ops = [_op(s, i) for i, s in enumerate("ababab")]
    assert _streams(list(record_batches(ops, 4, 10**6))) == [list("abab"), list("ab")]
    size = ops[0].size
    assert _streams(list(record_batches(ops, 500, 3 * size))) == [list("aba"), list("bab")]


def test_metadata_and_tombstones_are_alone_and_skipped_records_go_along():
    ops = [
        _op("a", 1),
        _op("$$a", 2, MetadataOp),
        _op("b", 3),
        _op("$ce-x", 4, SkipOp),
        _op("a", 5),
        _op("b", 6, TombstoneOp),
        _op("c", 7),
    ]
    assert _streams(list(record_batches(ops, 500, 10**6))) == [
        ["a"],
        ["$$a"],
        ["b", "$ce-x", "a"],
        ["b"],
        ["c"],
    ]


def test_names_that_differ_only_in_case_end_the_batch():
    ops = [_op("Order-1", 1), _op("x", 2), _op("order-1", 3), _op("Order-1", 4)]
    assert _streams(list(record_batches(ops, 500, 10**6))) == [
        ["Order-1", "x"],
        ["order-1"],
        ["Order-1"],
    ]
