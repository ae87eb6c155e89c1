"""Stream revisions: a source stream revision to the target stream's."""

from __future__ import annotations

import uuid
from typing import Literal

from core import rules
from core.config import JobConfig
from core.errors import StreamTombstoned, TranslateError
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
    require_replicated,
)


def translate_stream(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    stream: str,
    revision: int | None,
    *,
    relayed: int | None = NOT_LOADED,
) -> TranslatedPosition:
    """`revision` None: the subscription has processed nothing of the stream ("start")."""
    if revision is None:
        return from_start("stream", stream)
    if revision < 0:
        raise TranslateError(f"revision {revision} is negative", hint="give a stream revision")
    if not job.filters.accepts_stream(stream):
        raise TranslateError(
            f"stream {stream!r} is not replicated by job {job.job_id!r} (its filters exclude it)"
        )
    try:
        events = source.read_stream(stream, from_revision=revision, limit=1)
    except StreamTombstoned:
        raise TranslateError(f"source stream {stream!r} is deleted") from None
    if not events or events[0].revision != revision:
        raise TranslateError(
            f"source stream {stream!r} has no readable event at revision {revision}",
            hint="give the revision of an event the subscription processed",
        )
    relayed = require_replicated(
        job, source, events[0].commit_position, f"revision {revision} of {stream!r}", relayed
    )
    method: Literal["original-metadata", "event-id"] = "event-id"
    found: Event | None = None
    by_id = not job.original_metadata
    if job.original_metadata:
        claims = claims_of(job, source)
        try:
            anchor = _stream_by_original(target, stream, revision)
            confirm(claims, anchor, lambda origin: origin.revision <= revision)
            found = _over_unmarked_stream(source, target, stream, anchor, revision)

            def after(at: int | None, limit: int) -> list[Event]:
                start = 0 if at is None else at + 1
                return target.read_stream(stream, from_revision=start, limit=limit)

            following = next_marked(
                after, found, rules.read_original_revision, key=lambda e: e.revision
            )
            confirm(claims, following, lambda origin: origin.revision > revision)
            method = "original-metadata"
        except Unconfirmed:
            found, by_id = None, True
        by_id = by_id or (
            found is None and _has_replicated_in_stream(job, source, stream, revision)
        )
    if by_id:
        found = _stream_by_id(job, source, target, stream, revision)
        method = "event-id"
    return TranslatedPosition(
        kind="stream",
        stream=stream,
        source=revision,
        target=found.revision if found else None,
        method=method,
        anchor_event_id=str(found.event_id) if found else None,
        relay_position=relayed,
    )


def _stream_by_original(target: EventStore, stream: str, revision: int) -> Event | None:
    """The target stream's last event with `$originalStreamRevision` <= revision. The target
    revision is usually <= the source's (the relay only drops events), so look there first."""
    ahead = target.read_stream(stream, from_revision=revision, limit=PAGE)
    last: Event | None = None
    while ahead:
        for event in ahead:
            original = rules.read_original_revision(event.metadata)
            if original is None:
                continue
            if original > revision:
                if last is not None:
                    return last
                ahead = []
                break
            last = event
        else:
            if len(ahead) < PAGE:
                return last
            ahead = target.read_stream(stream, from_revision=ahead[-1].revision + 1, limit=PAGE)
    if last is not None:
        return last
    start: int | None = revision
    while start is not None and start >= 0:
        page = target.read_stream_backwards(stream, start, PAGE)
        for event in page:
            original = rules.read_original_revision(event.metadata)
            if original is not None and original <= revision:
                return event
        if len(page) < PAGE:
            return None
        start = page[-1].revision - 1
    return None


def _over_unmarked_stream(
    source: EventStore, target: EventStore, stream: str, anchor: Event | None, revision: int
) -> Event | None:
    """As _over_unmarked_all, for a stream's events without `$originalStreamRevision`."""
    start = anchor.revision + 1 if anchor else 0
    run: list[Event] = []
    for event in target.read_stream(stream, from_revision=start, limit=UNMARKED_RUN):
        if rules.read_original_revision(event.metadata) is not None:
            break
        run.append(event)
    if not run:
        return anchor
    lower = rules.read_original_revision(anchor.metadata) if anchor else None
    first = 0 if lower is None else lower + 1
    seen: set[uuid.UUID] = set()
    wanted = {e.event_id for e in run}
    while first <= revision and wanted - seen:
        page = source.read_stream(
            stream, from_revision=first, limit=min(PAGE, revision - first + 1)
        )
        seen.update(e.event_id for e in page if e.revision <= revision and e.event_id in wanted)
        if not page:
            break
        first = page[-1].revision + 1
    for event in run:
        if event.event_id not in seen:
            break
        anchor = event
    return anchor


def _has_replicated_in_stream(
    job: JobConfig, source: EventStore, stream: str, revision: int
) -> bool:
    for event in source.read_stream_backwards(stream, revision, PAGE):
        if job.filters.accepts_event_type(event.type) and not event.type.startswith("$"):
            return True
    return False


def _stream_by_id(
    job: JobConfig, source: EventStore, target: EventStore, stream: str, revision: int
) -> Event | None:
    start: int | None = revision
    misses = 0
    while start is not None and start >= 0:
        page = source.read_stream_backwards(stream, start, PAGE)
        for event in page:
            if event.type.startswith("$") or not job.filters.accepts_event_type(event.type):
                continue
            found = _find_in_target_stream(target, stream, event.event_id)
            if found is not None:
                following = target.read_stream(stream, from_revision=found.revision + 1, limit=64)
                index = 1
                for e in following:
                    if e.event_id != rules.derive_id(event.event_id, index):
                        break
                    found, index = e, index + 1
                return found
            misses += 1
            if misses >= MAX_MISSES:
                raise TranslateError(
                    f"none of the last {MAX_MISSES} source events of {stream!r} at or before "
                    f"revision {revision} is on the target (matched by event id)",
                    hint="a transform that changes ids or drops events needs "
                    "original_metadata = true to translate revisions",
                )
        if len(page) < PAGE:
            return None
        start = page[-1].revision - 1
    return None


def _find_in_target_stream(target: EventStore, stream: str, event_id: uuid.UUID) -> Event | None:
    start: int | None = None
    while True:
        page = target.read_stream_backwards(stream, start, PAGE)
        for event in page:
            if event.event_id == event_id:
                return event
        if len(page) < PAGE or page[-1].revision == 0:
            return None
        start = page[-1].revision - 1
