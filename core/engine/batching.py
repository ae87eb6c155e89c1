"""How a slice's planned ops are grouped into appends: runs of one stream, ordered batches of
several streams for a multi-stream append (in `$all` order), record batches for AppendRecords
(any interleaving, in `$all` order), each stream's ops of the slice (partitioned mode), and
packs of several streams' groups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.engine.plan import EventOp, Op, SkipOp


def runs(ops: Iterable[Op], max_events: int, max_bytes: int) -> Iterator[list[Op]]:
    """Consecutive ops of one kind and stream, split by the batch limits."""
    group: list[Op] = []
    events = size = 0
    for op in ops:
        n = len(op.events)
        b = op.size
        same = (
            group
            and isinstance(op, EventOp)
            and isinstance(group[0], EventOp)
            and group[0].source.stream == op.source.stream
            and events + n <= max_events
            and size + b <= max_bytes
        )
        if group and not same:
            yield group
            group, events, size = [], 0, 0
        group.append(op)
        events += n
        size += b
    if group:
        yield group


def ordered_batches(ops: Iterable[Op], max_events: int, max_bytes: int) -> Iterator[list[Op]]:
    """For a target with multi-stream append: consecutive event ops of any streams, in `$all`
    order, up to the batch limits; a stream that comes back after another one ends the batch
    (one multi-stream append names a stream once). Metadata and tombstones are barriers,
    written alone. Events the v2 API cannot carry (non-JSON metadata) are found, and written
    alone, as the batch's request is built (StreamWriter._multi): each event is checked once."""
    group: list[Op] = []
    group_alone = False
    seen: set[str] = set()
    events = size = 0
    for op in ops:
        n, b = len(op.events), op.size
        key = op.source.stream.casefold()
        alone = not isinstance(op, EventOp)
        fits = (
            group
            and not alone
            and not group_alone
            and events + n <= max_events
            and size + b <= max_bytes
            and (key not in seen or group[-1].source.stream.casefold() == key)
        )
        if group and not fits:
            yield group
            group, seen, events, size = [], set(), 0, 0
        group_alone = alone
        group.append(op)
        seen.add(key)
        events += n
        size += b
    if group:
        yield group


def record_batches(ops: Iterable[Op], max_events: int, max_bytes: int) -> Iterator[list[Op]]:
    """For a target with AppendRecords (KurrentDB 26.1): consecutive ops in `$all` order, of
    any streams in any interleaving (a stream may come back), up to the batch limits, for one
    atomic append that keeps their order. Records that write nothing (skipped, or dropped by
    the transform) go along. Metadata and tombstones are barriers, written alone; so is a
    stream whose name differs only in case from one already in the batch (the server would
    take them for one stream). Events the v2 API cannot carry are found, and written alone,
    as the batch's request is built (core/engine/records.py): each event is parsed once."""
    group: list[Op] = []
    names: dict[str, str] = {}
    events = size = 0
    group_alone = False
    for op in ops:
        n, b = len(op.events), op.size
        alone = not isinstance(op, EventOp | SkipOp)
        fits = (
            not alone
            and not group_alone
            and (not n or names.get(op.stream.casefold(), op.stream) == op.stream)
            and events + n <= max_events
            and size + b <= max_bytes
        )
        if group and not fits:
            yield group
            group, names, events, size = [], {}, 0, 0
        group_alone = alone
        group.append(op)
        if n:
            names.setdefault(op.stream.casefold(), op.stream)
        events += n
        size += b
    if group:
        yield group


def packed_batches(
    groups: Iterable[list[Op]], max_events: int, max_bytes: int
) -> Iterator[list[list[Op]]]:
    """For a target with multi-stream append: `stream_batches`' groups, several streams' at a
    time, for one atomic append each, up to the batch limits. A stream's groups keep their
    order: one that is not plain events (metadata, tombstone) is written alone, and a stream
    already in the pack ends it (one multi-stream append names a stream once). Events the v2
    API cannot carry are found, and written alone, as the pack's request is built."""
    pack: list[list[Op]] = []
    names: set[str] = set()
    events = size = 0
    for group in groups:
        n = sum(len(op.events) for op in group)
        b = sum(op.size for op in group)
        key = group[0].source.stream.casefold()
        alone = not isinstance(group[0], EventOp)
        if pack and (alone or key in names or events + n > max_events or size + b > max_bytes):
            yield pack
            pack, names, events, size = [], set(), 0, 0
        if alone:
            yield [group]
            continue
        pack.append(group)
        names.add(key)
        events += n
        size += b
    if pack:
        yield pack


def by_run(ops: list[Op]) -> list[tuple[str, list[Op]]]:
    parts: list[tuple[str, list[Op]]] = []
    for op in ops:
        if parts and parts[-1][0] == op.source.stream:
            parts[-1][1].append(op)
        else:
            parts.append((op.source.stream, [op]))
    return parts


def stream_batches(ops: Iterable[Op], max_events: int, max_bytes: int) -> Iterator[list[Op]]:
    """Each stream's ops in its own order, its events batched into as few appends as the
    limits allow whatever other streams lie between them; metadata and tombstones are
    barriers. Streams come in the order of their first op."""
    by_stream: dict[str, list[Op]] = {}
    for op in ops:
        by_stream.setdefault(op.stream, []).append(op)
    for stream_ops in by_stream.values():
        yield from runs(stream_ops, max_events, max_bytes)
