"""Translate a source checkpoint into the target's, for moving catch-up subscriptions.

A subscription's checkpoint P means "processed everything up to and including P". On the
target it must resume after the last replicated event at or before P: every target event
after that one was copied from a source event after P (the relay writes in `$all` order), and
every event before it from a source event at or before P. So:

- a source `$all` commit position P becomes the target commit position of the last target
  record whose source position (`$originalPosition`) is <= P; None (the start of `$all`) when
  no such record exists;
- a source stream revision R becomes the target revision of the stream's last event whose
  source revision (`$originalStreamRevision`) is <= R; None (the start of the stream) when
  none.

Catch-up subscriptions (esdbclient `subscribe_to_all(commit_position=...)`,
`subscribe_to_stream(stream_position=...)`) are exclusive of the position they are given, so
the translated value is passed as it is. Without `$original*` metadata (`original_metadata =
false`), the last replicated source event at or before P is found in the source and its id
looked up in the target (ids are kept).

`$original*` keys are only claims: a user's metadata may hold them too (data migrated before,
by esdb-relay or another tool). Every claim a translation rests on, the anchor's and the next
marked record's, is confirmed in the source (the record there has the same id,
core/engine/locate.py); if one is not, the translation is made by event ids instead.

Every search reads pages (bounded memory). For `$all` it scans from whichever end of the
target is nearer, judged by where P lies in the source's log. Records that carry no source
position (tombstones, target-only system records) are never chosen: such a record just after
the chosen one can be delivered again; subscriptions normally ignore system events.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from core import rules
from core.checkpoint import open_store
from core.config import JobConfig
from core.engine.locate import Locator
from core.engine.plan import Origin, Planner, SliceIndex
from core.errors import NotReplicatedError, RelayError, StreamTombstoned, TranslateError
from core.eventstore import EventStore
from core.model import Event

PAGE = 500
MAX_MISSES = 200  # replicated-looking source events not found on the target: give up
UNMARKED_RUN = 1000  # target records without `$original*` looked up after an anchor


class TranslatedPosition(BaseModel):
    kind: Literal["all", "stream"]
    stream: str | None = None
    source: int
    target: int | None  # None = from the start ($all or the stream)
    method: Literal["original-metadata", "event-id"]
    anchor_event_id: str | None = None  # the target event the subscription resumes after
    relay_position: int | None = None


# ------------------------------------------------------------------------------ relay state
def relay_position(job: JobConfig) -> int | None:
    """Source `$all` position the job has committed (None = nothing copied yet)."""
    store = open_store(job.checkpoint_store)
    try:
        checkpoint = store.load(job.job_id)
    finally:
        store.close()
    return checkpoint.position.commit if checkpoint and checkpoint.position else None


NOT_LOADED = -2  # `relayed` argument default: read the job's checkpoint from its store


def _require_replicated(
    job: JobConfig, source: EventStore, position: int, what: str, relayed: int | None = NOT_LOADED
) -> int:
    if relayed == NOT_LOADED:
        relayed = relay_position(job)
    if relayed is None or position > relayed:
        head = source.head_position()
        at = "has not copied anything yet" if relayed is None else f"is at {relayed:,}"
        behind = f" ({head - (relayed or 0):,} bytes of the source behind)" if head else ""
        raise NotReplicatedError(
            f"{what} (source position {position:,}) is not replicated yet: the relay of job "
            f"{job.job_id!r} {at}{behind}",
            hint="let the relay catch up (esdb-relay run --until-caught-up, or esdb-relay "
            "status to watch it), then translate again",
        )
    return relayed


def _replicated_kind(job: JobConfig, event: Event) -> bool:
    """An event or stream metadata the job copies: the records that carry `$original*`."""
    return rules.copied_kind(job.filters, event) in (rules.Kind.EVENT, rules.Kind.METADATA)


# ------------------------------------------------------------------------------------ $all
def translate_position(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    position: int,
    *,
    relayed: int | None = NOT_LOADED,
) -> TranslatedPosition:
    """See the module doc. `relayed`: the job's checkpoint if already loaded (batch mode)."""
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
    relayed = _require_replicated(job, source, position, f"position {position:,}", relayed)
    method: Literal["original-metadata", "event-id"] = "event-id"
    found: Event | None = None
    by_id = not job.original_metadata
    if job.original_metadata:
        claims = _claims(job, source)
        try:
            anchor = _all_by_original(source, target, position)
            _confirm(claims, anchor, lambda origin: origin.position <= position)
            found = _over_unmarked_all(source, target, anchor, position)
            following = _next_marked(target.read_all_after, found, rules.read_original_position)
            _confirm(claims, following, lambda origin: origin.position > position)
            method = "original-metadata"
        except _Unconfirmed:
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


class _Unconfirmed(Exception):
    """A claim the translation rests on is not confirmed by the source."""


def _claims(job: JobConfig, source: EventStore) -> Locator:
    transform = rules.load_transform(job.transform)
    return Locator(source, Planner(job, source, transform), SliceIndex())


def _confirm(claims: Locator, record: Event | None, holds: Callable[[Origin], bool]) -> None:
    """The source confirms the record's claim, and `holds` of where it came from."""
    if record is None:
        return
    origin = claims.claimed(record.stream, record)
    if origin is None or not holds(origin):
        raise _Unconfirmed
    position = rules.read_original_position(record.metadata)
    revision = rules.read_original_revision(record.metadata)
    if position not in (None, origin.position) or revision not in (None, origin.revision):
        raise _Unconfirmed  # one key the source's, the other not: not the relay's


def _next_marked(
    read_after: Callable[[int | None, int], Iterable[Event]],
    after: Event | None,
    claim: Callable[[bytes], int | None],
    *,
    key: Callable[[Event], int] = lambda e: e.commit_position,
) -> Event | None:
    """The first record after `after` that carries a claim (None: none in UNMARKED_RUN)."""
    at = key(after) if after else None
    seen = 0
    while seen < UNMARKED_RUN:
        page = list(read_after(at, 64))
        for event in page:
            if claim(event.metadata) is not None:
                return event
        if len(page) < 64:
            return None
        seen += len(page)
        at = key(page[-1])
    return None


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
    return any(_replicated_kind(job, e) for e in _source_backwards_from(source, position))


def _all_by_id(
    job: JobConfig, source: EventStore, target: EventStore, position: int
) -> Event | None:
    misses = 0
    for event in _source_backwards_from(source, position):
        if not _replicated_kind(job, event):
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
def translate_revision(
    job: JobConfig, source: EventStore, target: EventStore, stream: str, revision: int
) -> int | None:
    return translate_stream(job, source, target, stream, revision).target


def translate_stream(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    stream: str,
    revision: int,
    *,
    relayed: int | None = NOT_LOADED,
) -> TranslatedPosition:
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
    relayed = _require_replicated(
        job, source, events[0].commit_position, f"revision {revision} of {stream!r}", relayed
    )
    method: Literal["original-metadata", "event-id"] = "event-id"
    found: Event | None = None
    by_id = not job.original_metadata
    if job.original_metadata:
        claims = _claims(job, source)
        try:
            anchor = _stream_by_original(target, stream, revision)
            _confirm(claims, anchor, lambda origin: origin.revision <= revision)
            found = _over_unmarked_stream(source, target, stream, anchor, revision)

            def after(at: int | None, limit: int) -> list[Event]:
                start = 0 if at is None else at + 1
                return target.read_stream(stream, from_revision=start, limit=limit)

            following = _next_marked(
                after, found, rules.read_original_revision, key=lambda e: e.revision
            )
            _confirm(claims, following, lambda origin: origin.revision > revision)
            method = "original-metadata"
        except _Unconfirmed:
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


# ------------------------------------------------------------------------------------ batch
FIELDS = ["name", "kind", "stream", "position", "revision"]
OUT_FIELDS = [*FIELDS, "target_position", "target_revision", "method", "error"]


def translate_file(
    job: JobConfig, source: EventStore, target: EventStore, src: Path, out: Path
) -> tuple[int, int]:
    """Translate every checkpoint of `src` (JSON lines, or CSV when it ends in .csv) into
    `out` (same format). A row that cannot be translated gets `error` set. Returns (rows,
    errors)."""
    is_csv = src.suffix.lower() == ".csv"
    rows = _read_rows(src, is_csv)
    results = []
    errors = 0
    relayed = relay_position(job)  # one checkpoint read for the whole file
    for row in rows:
        result = dict(row)
        try:
            result.update(_translate_row(job, source, target, row, relayed))
        except (RelayError, ValueError) as e:
            result["error"] = str(e)
            errors += 1
        results.append(result)
    _write_rows(out, results, is_csv or out.suffix.lower() == ".csv")
    return len(results), errors


def _read_rows(src: Path, is_csv: bool) -> list[dict]:
    text = src.read_text(encoding="utf-8")
    if is_csv:
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise TranslateError(f"{src.name}: line {number} is not JSON: {e}") from None
        if not isinstance(row, dict):
            raise TranslateError(f"{src.name}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def _int(value: object, name: str) -> int:
    if value is None or value == "":
        raise ValueError(f"{name} is missing")
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not an integer") from None


def _translate_row(
    job: JobConfig, source: EventStore, target: EventStore, row: dict, relayed: int | None
) -> dict:
    kind = str(row.get("kind") or ("stream" if row.get("stream") else "all"))
    if kind == "all":
        position = _int(row.get("position"), "position")
        t = translate_position(job, source, target, position, relayed=relayed)
        return {"target_position": t.target, "method": t.method, "error": None}
    if kind == "stream":
        stream = row.get("stream")
        if not stream:
            raise ValueError("kind stream needs a stream")
        t = translate_stream(
            job, source, target, str(stream), _int(row.get("revision"), "revision")
        )
        return {"target_revision": t.target, "method": t.method, "error": None}
    raise ValueError(f"kind {kind!r} is neither 'all' nor 'stream'")


def _write_rows(out: Path, rows: list[dict], is_csv: bool) -> None:
    if is_csv:
        with out.open("w", newline="", encoding="utf-8") as f:
            names = list(OUT_FIELDS) + sorted({k for r in rows for k in r if k not in OUT_FIELDS})
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in names})
        return
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
