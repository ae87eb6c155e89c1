"""`$all` positions: a source commit position to the target's."""

from __future__ import annotations

import uuid
from typing import Literal

from core import rules
from core.config import JobConfig
from core.errors import TranslateError
from core.eventstore import EventStore
from core.model import Event
from core.tools.translate.common import (
    MAX_MISSES,
    NOT_LOADED,
    PAGE,
    UNMARKED_RUN,
    TranslatedPosition,
    Unconfirmed,
    claims_of,
    confirm,
    from_start,
    next_marked,
    replicated_kind,
    require_replicated,
)


def translate_position(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    position: int | None,
    *,
    relayed: int | None = NOT_LOADED,
) -> TranslatedPosition:
    """See the module doc. `relayed`: the job's checkpoint if already loaded (batch mode).
    `position` None: the subscription has processed nothing ("start")."""
    if position is None:
        return from_start("all")
    if position < 0:
        raise TranslateError(f"position {position} is negative", hint="give a commit position")
    if job.mode == "partitioned" and job.partitions > 1:
        raise TranslateError(
            f"job {job.job_id!r} copies in partitioned mode ({job.partitions} writers): the "
            "target's $all order differs from the source's, so no target $all position "
            "resumes a subscription exactly",
            hint="translate stream revisions instead (per-stream order is kept), or move $all "
            "subscriptions at cutover, from the target's end, once the relay has caught up",
        )
    relayed = require_replicated(job, source, position, f"position {position:,}", relayed)
    method: Literal["original-metadata", "event-id"] = "event-id"
    found: Event | None = None
    by_id = not job.original_metadata
    if job.original_metadata:
        claims = claims_of(job, source)
        try:
            anchor = _all_by_original(source, target, position)
            confirm(claims, anchor, lambda origin: origin.position <= position)
            found = _over_unmarked_all(source, target, anchor, position)
            following = next_marked(target.read_all_after, found, rules.read_original_position)
            confirm(claims, following, lambda origin: origin.position > position)
            method = "original-metadata"
        except Unconfirmed:
            found, by_id = None, True
        # Metadata may be missing (non-JSON user metadata): fall back to ids.
        by_id = by_id or (found is None and _has_replicated_before(job, source, position))
    if by_id:
        found = _all_by_id(job, source, target, position)
        method = "event-id"
    return TranslatedPosition(
        kind="all",
        source=position,
        target=found.commit_position if found else None,
        method=method,
        anchor_event_id=str(found.event_id) if found else None,
        relay_position=relayed,
    )


def _all_by_original(source: EventStore, target: EventStore, position: int) -> Event | None:
    """The last target record whose `$originalPosition` is <= position."""
    head = source.head_position()
    if head and position < head // 2:
        return _forward_scan(target, position)
    return _backward_scan(target, position)


def _backward_scan(target: EventStore, position: int) -> Event | None:
    before: int | None = None
    while True:
        page = target.read_all_backwards(before, PAGE)
        for event in page:
            original = rules.read_original_position(event.metadata)
            if original is not None and original <= position:
                return event
        if len(page) < PAGE:
            return None
        before = page[-1].commit_position


def _forward_scan(target: EventStore, position: int) -> Event | None:
    last: Event | None = None
    after: int | None = None
    while True:
        page = list(target.read_all_after(after, PAGE))
        for event in page:
            original = rules.read_original_position(event.metadata)
            if original is None:
                continue
            if original > position:
                return last
            last = event
        if len(page) < PAGE:
            return last
        after = page[-1].commit_position


def _over_unmarked_all(
    source: EventStore, target: EventStore, anchor: Event | None, position: int
) -> Event | None:
    """Target records right after the anchor that carry no `$originalPosition` (non-JSON
    user metadata, tombstones) may come from source records at or before position: look
    them up in the source range (anchor's source position, position] and step over them."""
    run: list[Event] = []
    after = anchor.commit_position if anchor else None
    while len(run) < UNMARKED_RUN:
        following = list(target.read_all_after(after, 64))
        for event in following:
            if rules.read_original_position(event.metadata) is not None:
                break
            run.append(event)
        else:
            if len(following) == 64:
                after = following[-1].commit_position
                continue
        break
    if not run:
        return anchor
    lower = rules.read_original_position(anchor.metadata) if anchor else None
    wanted = {(e.stream, e.event_id) for e in run if e.type != "$streamDeleted"}
    deleted = {e.stream for e in run if e.type == "$streamDeleted"}
    seen_ids: set[tuple[str, uuid.UUID]] = set()
    seen_deletes: set[str] = set()
    cursor = lower
    while wanted - seen_ids or deleted - seen_deletes:
        page = list(source.read_all_after(cursor, PAGE))
        for event in page:
            if event.commit_position > position:
                page = []
                break
            if (event.stream, event.event_id) in wanted:
                seen_ids.add((event.stream, event.event_id))
            elif event.type == "$streamDeleted" and event.stream in deleted:
                seen_deletes.add(event.stream)
        if len(page) < PAGE:
            break
        cursor = page[-1].commit_position
    for event in run:
        if event.stream.startswith("$"):
            continue  # the target's own system records: not copied, never an anchor
        if event.type == "$streamDeleted":
            if event.stream not in seen_deletes:
                break
        elif (event.stream, event.event_id) not in seen_ids:
            break
        anchor = event
    return anchor


def _source_backwards_from(source: EventStore, position: int):
    """Source `$all` records at or before position, newest first, page by page."""
    at = source.record_at(position)
    if at is not None:
        yield at
    before = position
    while True:
        page = source.read_all_backwards(before, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        before = page[-1].commit_position


def _has_replicated_before(job: JobConfig, source: EventStore, position: int) -> bool:
    return any(replicated_kind(job, e) for e in _source_backwards_from(source, position))


def _all_by_id(
    job: JobConfig, source: EventStore, target: EventStore, position: int
) -> Event | None:
    misses = 0
    for event in _source_backwards_from(source, position):
        if not replicated_kind(job, event):
            continue
        found = _find_in_target_all(target, event)
        if found is not None:
            return _last_derived(target, found, event.event_id)
        misses += 1  # dropped by a transform, dead-lettered, or scavenged
        if misses >= MAX_MISSES:
            raise TranslateError(
                f"none of the last {MAX_MISSES} replicated-looking source events at or before "
                f"{position:,} is on the target (matched by event id)",
                hint="a transform that changes ids or drops events needs original_metadata = "
                "true to translate positions",
            )
    return None


def _find_in_target_all(target: EventStore, event: Event) -> Event | None:
    """The target record of the stream with the event's id (searched newest first)."""
    before: int | None = None
    while True:
        page = target.stream_records_backwards(event.stream, before, PAGE)
        for record in page:
            if record.event_id == event.event_id and record.stream == event.stream:
                return record
        if len(page) < PAGE:
            return None
        before = page[-1].commit_position


def _last_derived(target: EventStore, found: Event, source_id: uuid.UUID) -> Event:
    """A transform's further outputs follow the first in the same append (derived ids)."""
    last = found
    index = 1
    while True:
        following = list(target.read_all_after(last.commit_position, 1))
        if not following or following[0].event_id != rules.derive_id(source_id, index):
            return last
        last = following[0]
        index += 1


# ---------------------------------------------------------------------------------- streams


# ------------------------------------------------------------------------------------ batch
