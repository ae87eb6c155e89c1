"""verify: prove the target holds exactly what the (filtered) source holds, stream by stream.

What is compared, per user stream the job's stream filters accept:
- state: tombstoned / soft-deleted (`$tb` = long.MaxValue) / live, on both sides;
- the visible events, in order: event id, type, content type, a sha256 of the data and the
  metadata, which must be byte-equal to what the relay writes: the user's bytes, with the
  `$original*` keys inserted when `job.original_metadata` is on and the user's metadata holds
  none (or without them, for an event they would have made too big for the target). The
  expected target events are derived from the source's visible events as the engine derives
  them: system/link events skipped, event-type filters applied, then the job's transform (if
  any) applied. With `multi_append`, metadata a v2 append may have stored as properties is
  also accepted by value (see _v2_value_digest): that API cannot keep the bytes;
- the effective stream metadata (`$maxCount`, `$maxAge`, `$acl`, custom keys…), except `$tb`:
  `$tb` names source revisions on the source and translated revisions on the target, so it is
  compared by its effect — the visible events, which are compared anyway;
- with no sample: streams on the target that are not in the filtered source ("extra").

Streams are discovered by scanning the source's `$all` (user events, `$metadata` of user
streams, tombstones; see rules.classify). Only the set of stream names is kept; events are read
one stream at a time, page by page, and compared in lock step, holding one page per side. Only
when a stream diverges are the rest of its events held, as small fingerprints, to classify the
differences (missing, extra, different, out of order).

Where a stream read on the source cannot show everything the target legitimately shows, the
extra target events are counted as `events_unverified` with a note rather than reported:
- `$maxAge`: the target's copies are younger than the source's events, so the target still
  shows events the source already hides by age;
- a `$maxCount` window holding records the relay does not copy (links, system events, event
  types the filters skip), or a job with a transform: the source counts records the target
  does not have (or one event where the transform made several), so the target's window
  reaches further back than the source's.
In both cases only target events *before* the first expected event are tolerated.

The scavenge filter needs no special case: it drops only events a stream read of the source
does not show (deleted streams, before `$tb`, beyond `$maxCount`, past `$maxAge`), and deletes
and stream metadata are still copied.

Verify is meant for a quiet source (after catch-up, at cutover): events the source receives
while verify runs and the relay has not copied yet show up as differences.

Resumable: with `state=FILE` the list of streams to check and the results so far are saved to
FILE (after the scan, every `save_every` seconds, and when the run is interrupted by any
exception, Ctrl-C included); a later run with the same FILE skips the scan and the streams
already checked. Streams are merged in order, so the saved progress is a prefix of the list
and the finished report equals an uninterrupted run's (its time is the sum of the runs'). The
file is deleted once the report is complete.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise, zip_longest
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from core import rules
from core.config import JobConfig
from core.connection import redact_connection_string
from core.errors import ConfigError, StreamTombstoned
from core.eventstore import EventStore
from core.eventstore.v2 import JSON_CONTENT_TYPE, event_problem
from core.model import Event, OutEvent
from core.verify_all import AllRecords

PAGE = 1000  # records per read, for `$all` and stream reads
_ALL = "$all"  # the stream name of a difference in the order of `$all`
DEFAULT_MAX_DIFFERENCES = 1000
_MAX_NOTES = 100
_DIGEST_HEX = 12  # hex characters of a sha256 shown in a detail


class DifferenceKind(StrEnum):
    MISSING_STREAM = "missing_stream"
    EXTRA_STREAM = "extra_stream"
    MISSING_EVENT = "missing_event"
    EXTRA_EVENT = "extra_event"
    DIFFERENT_EVENT = "different_event"
    ORDER = "order"
    DELETED_STATE = "deleted_state"
    METADATA = "metadata"
    ALL_RECORDS = "all_records"  # a stream's records in `$all`, hidden ones included
    ALL_ORDER = "all_order"  # the order of `$all` (ordered mode)


class Difference(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: str
    kind: DifferenceKind
    source_revision: int | None = None
    target_revision: int | None = None
    event_id: str | None = None
    detail: str = ""


class VerifyReport(BaseModel):
    job_id: str
    sample: int | None = Field(default=None, description="sample size asked for, None = all")
    seed: int = 0
    transform: str | None = Field(
        default=None, description="the job's transform, applied to source events before comparing"
    )
    original_metadata: bool = True
    streams_in_source: int = Field(default=0, description="user streams the job's filters accept")
    sampled_streams: list[str] | None = Field(
        default=None, description="the streams a sample checked, sorted (None without a sample)"
    )
    streams_checked: int = 0
    streams_equal: int = 0
    streams_differing: int = 0
    extra_streams: int = Field(default=0, description="target streams not in the filtered source")
    extra_streams_checked: bool = Field(
        default=False, description="whether the target was scanned for extra streams (no sample)"
    )
    events_compared: int = 0
    events_unverified: int = Field(
        default=0, description="target events the source no longer shows ($maxAge, $maxCount)"
    )
    differences_total: int = 0
    max_differences: int = DEFAULT_MAX_DIFFERENCES
    differences: list[Difference] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    events_per_second: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.differences_total == 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def differences_truncated(self) -> bool:
        return self.differences_total > len(self.differences)


Progress = Callable[[int, int], None]


def verify(
    job: JobConfig,
    source: EventStore,
    target: EventStore,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    max_differences: int = DEFAULT_MAX_DIFFERENCES,
    workers: int = 1,
    state: Path | None = None,
    save_every: float = 10.0,
) -> VerifyReport:
    """Compare the target with the job's filtered source; see the module doc for the rules.

    `sample=N` checks a deterministic (per `seed`) random sample of N streams and skips the
    scan for extra target streams. `progress(done, total)` is called as streams are checked.
    At most `max_differences` differences are listed (all are counted). `workers > 1` checks
    that many streams concurrently (each holds one page of events per side at a time); the
    report is the same as with one worker. `state`: a file progress is saved to (every
    `save_every` seconds and on interruption) and resumed from; ConfigError if it was written
    for another job, sample or seed.
    """
    if sample is not None and sample < 0:
        raise ValueError("sample must be >= 0")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    verifier = _Verifier(job, source, target, max_differences, workers)
    if state is not None:
        verifier.saver = _StateFile(state, _fingerprint(job, sample, seed, max_differences))
    verifier.save_every = save_every
    return verifier.run(sample, seed, progress)


def public_endpoint(connection_string: str) -> str:
    """Scheme and hosts only: no credentials, no query parameters (they may name key files)."""
    redacted = redact_connection_string(connection_string)
    scheme, _, rest = redacted.partition("://")
    hosts = rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{hosts}"


# ----------------------------------------------------------------------------- resume state
STATE_VERSION = 2


class VerifyState(BaseModel):
    """What a resumed run needs: the streams to check, how many are done, the results so far."""

    version: int = STATE_VERSION
    fingerprint: str
    streams: list[str]
    done: int = 0
    report: VerifyReport
    extras: list[Difference] = Field(default_factory=list)
    extras_total: int = 0
    # `$all` differences (core/verify_all.py), reported once the stream checks are over for
    # the streams they found equal, and the order only when nothing else differs.
    pending_all: list[Difference] = Field(default_factory=list)


def _fingerprint(job: JobConfig, sample: int | None, seed: int, max_differences: int) -> str:
    """What must not change between a run and its resumption (no secrets: hosts only)."""
    parts = {
        "job_id": job.job_id,
        "source": public_endpoint(job.source.get_secret_value()),
        "target": public_endpoint(job.target.get_secret_value()),
        "filters": job.filters.model_dump(mode="json"),
        "transform": job.transform,
        "original_metadata": job.original_metadata,
        "sample": sample,
        "seed": seed,
        "max_differences": max_differences,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


class _StateFile:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint

    def load(self) -> VerifyState | None:
        if not self.path.exists():
            return None
        try:
            state = VerifyState.model_validate_json(self.path.read_bytes())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"verify state file {self.path} cannot be read: {str(e).splitlines()[0]}",
                hint="delete it to start over, or pass another --state file",
            ) from None
        if state.version != STATE_VERSION or state.fingerprint != self.fingerprint:
            raise ConfigError(
                f"verify state file {self.path} was written for another job, endpoints, "
                "filters, transform, sample or seed",
                hint="run with the same job and options, or delete the file to start over",
            )
        return state

    def save(self, state: VerifyState) -> None:
        # Write then rename, so an interruption mid-write never leaves half a state file.
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(state.model_dump_json(), encoding="utf-8")
        os.replace(partial, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- internals
@dataclass(frozen=True, slots=True)
class _Print:
    """What is compared of one event, without holding its payload."""

    event_id: str
    revision: int
    type: str
    content_type: str
    data_sha: bytes
    data_len: int
    metadata_shas: tuple[bytes, ...]  # expected: every form the relay may write; target: one
    metadata_len: int
    # Expected: the digest of the JSON value a v2 (multi-stream) append stores, None if the
    # relay cannot write the event that way. Target: the digest of its JSON-object metadata.
    metadata_value: bytes | None = None

    @classmethod
    def of(cls, event: Event) -> _Print:
        """A target event's print."""
        metadata = event.metadata
        return cls(
            str(event.event_id),
            event.revision,
            event.type,
            event.content_type,
            hashlib.sha256(event.data).digest(),
            len(event.data),
            (hashlib.sha256(metadata).digest(),),
            len(metadata),
            _canon_digest(metadata),
        )

    @classmethod
    def expected(cls, out: OutEvent, revision: int, multi_append: bool) -> _Print:
        """What the relay writes for a source event: its metadata as the user wrote it, with
        the relay's `$original*` keys inserted (or without them, when they would have made
        the event too big for the target); through a v2 append, that value re-rendered."""
        forms = [out.metadata] if out.plain is None else [out.metadata, out.plain]
        return cls(
            str(out.event_id),
            revision,
            out.type,
            out.content_type,
            hashlib.sha256(out.data).digest(),
            len(out.data),
            tuple(hashlib.sha256(form).digest() for form in forms),
            len(out.metadata),
            _v2_value_digest(out) if multi_append else None,
        )

    def same_metadata(self, other: _Print) -> bool:
        if other.metadata_shas[0] in self.metadata_shas:
            return True
        return self.metadata_value is not None and self.metadata_value == other.metadata_value

    def mismatch(self, other: _Print) -> str | None:
        """What differs between the expected event (self) and the target's (other)."""
        parts = []
        if self.type != other.type:
            parts.append(f"type {_short(self.type)} != {_short(other.type)}")
        if self.content_type != other.content_type:
            parts.append(
                f"content type {_short(self.content_type)} != {_short(other.content_type)}"
            )
        if self.data_sha != other.data_sha:
            parts.append(
                f"data sha256 {self.data_sha.hex()[:_DIGEST_HEX]} ({self.data_len} B) != "
                f"{other.data_sha.hex()[:_DIGEST_HEX]} ({other.data_len} B)"
            )
        if not self.same_metadata(other):
            parts.append(
                f"metadata sha256 {self.metadata_shas[0].hex()[:_DIGEST_HEX]} "
                f"({self.metadata_len} B) != {other.metadata_shas[0].hex()[:_DIGEST_HEX]} "
                f"({other.metadata_len} B)"
            )
        return "; ".join(parts) or None


def _canonical(value: Any) -> Any:
    """JSON values as a protobuf Struct returns them compare equal: integral floats as ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _digest(value: dict) -> bytes:
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def _canon_digest(metadata: bytes) -> bytes | None:
    """The metadata's digest as a JSON object; None when it is not one."""
    if not metadata.lstrip().startswith(b"{"):
        return None
    value = rules.json_object(metadata)
    return _digest(value) if value is not None else None


def _v2_value_digest(out: OutEvent) -> bytes | None:
    """A v2 append stores metadata as properties; v1 reads show them as JSON with
    `$schema.name` (the event type) and `$schema.format` set by the server
    (EventRecord.SynthesizeMetadataFromProperties), numbers as doubles. The relay sends an
    event that way only when that changes nothing else (core.multi_append.event_problem)."""
    if event_problem(out) is not None:
        return None
    value = rules.json_object(out.metadata) if out.metadata else {}
    if value is None:
        return None
    value["$schema.name"] = out.type
    value["$schema.format"] = "Json" if out.content_type == JSON_CONTENT_TYPE else "Bytes"
    return _digest(value)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class _Side:
    """One side's view of a stream: its state, metadata and first page of visible events."""

    tombstoned: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    first_page: list[Event] = field(default_factory=list)

    @property
    def soft_deleted(self) -> bool:
        return not self.tombstoned and self.metadata.get("$tb") == rules.DELETED_STREAM

    @property
    def state(self) -> str:
        if self.tombstoned:
            return "tombstoned"
        return "soft-deleted" if self.soft_deleted else "live"


class _Differences:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Difference] = []
        self.total = 0

    def add(self, stream: str, kind: DifferenceKind, detail: str, **fields: Any) -> None:
        if len(self.items) < self.limit:
            self.append(Difference(stream=stream, kind=kind, detail=detail, **fields))
        else:
            self.total += 1

    def append(self, difference: Difference) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(difference)


class _Verifier:
    def __init__(
        self,
        job: JobConfig,
        source: EventStore,
        target: EventStore,
        max_differences: int,
        workers: int,
    ) -> None:
        self.job = job
        self.source = source
        self.target = target
        self.max_differences = max_differences
        self.workers = workers
        self.transform = rules.load_transform(job.transform)
        self.diffs = _Differences(max_differences)
        self.extras = _Differences(max_differences)
        self.report = VerifyReport(
            job_id=job.job_id,
            transform=job.transform,
            original_metadata=job.original_metadata,
            max_differences=max_differences,
        )
        self.saver: _StateFile | None = None
        self.save_every = 10.0
        self.pending_all: dict[str, Difference] = {}

    # ---------------------------------------------------------------------- the run
    def run(self, sample: int | None, seed: int, progress: Progress | None) -> VerifyReport:
        started = time.monotonic()
        resumed = self.saver.load() if self.saver else None
        if resumed is not None:
            ordered, first = resumed.streams, resumed.done
            self.report = report = resumed.report
            self.diffs.items, self.diffs.total = report.differences, report.differences_total
            self.extras.items, self.extras.total = resumed.extras, resumed.extras_total
            self.pending_all = {d.stream: d for d in resumed.pending_all}
            spent = report.seconds
        else:
            ordered, first, spent = self._discover(sample, seed), 0, 0.0
            report = self.report
        total = len(ordered)
        self._save(ordered, first, spent + time.monotonic() - started)
        saved_at = time.monotonic()
        if progress:
            progress(first, total)
        try:
            for done, check in enumerate(self._checks(ordered[first:]), first + 1):
                self._merge(check)
                if self.saver and time.monotonic() - saved_at >= self.save_every:
                    self._save(ordered, done, spent + time.monotonic() - started)
                    saved_at = time.monotonic()
                if progress:
                    progress(done, total)
        except BaseException:
            self._save(ordered, report.streams_checked, spent + time.monotonic() - started)
            raise
        # Extra target streams were found before the checks; they are listed after them.
        self.diffs.total += self.extras.total - len(self.extras.items)
        for difference in self.extras.items:
            self.diffs.append(difference)
        order = self.pending_all.pop(_ALL, None)
        for difference in self.pending_all.values():
            self.diffs.append(difference)
        if order is not None and not self.diffs.total:
            self.diffs.append(order)  # otherwise a consequence of what was found
        report.differences = self.diffs.items
        report.differences_total = self.diffs.total
        report.seconds = spent + time.monotonic() - started
        report.events_per_second = (
            report.events_compared / report.seconds if report.seconds > 0 else 0.0
        )
        if self.saver:
            self.saver.remove()
        return report

    def _discover(self, sample: int | None, seed: int) -> list[str]:
        """The streams to check, in order; with no sample, also the extra target streams."""
        report = self.report
        report.sample, report.seed = sample, seed
        tally = self._all_records() if sample is None else None
        streams = self._user_streams(self.source, self.job.filters.accepts_stream, tally)
        report.streams_in_source = len(streams)
        ordered = sorted(streams)
        if sample is not None:
            ordered = sorted(random.Random(seed).sample(ordered, min(sample, len(ordered))))
            report.sampled_streams = list(ordered)
        else:
            self._find_extra_streams(streams, tally)
        if tally is not None:
            for found in tally.differences(streams):
                kind = DifferenceKind.ALL_ORDER if found.stream is None else None
                stream = found.stream or _ALL
                self.pending_all[stream] = Difference(
                    stream=stream, kind=kind or DifferenceKind.ALL_RECORDS, detail=found.detail
                )
        if self.transform is not None:
            report.notes.append(
                f"transform {self.job.transform} applied to the source events before comparing"
            )
        return ordered

    def _save(self, ordered: list[str], done: int, seconds: float) -> None:
        if self.saver is None:
            return
        report = self.report.model_copy(
            update={
                "differences": list(self.diffs.items),
                "differences_total": self.diffs.total,
                "seconds": seconds,
            }
        )
        self.saver.save(
            VerifyState(
                fingerprint=self.saver.fingerprint,
                streams=ordered,
                done=done,
                report=report,
                extras=list(self.extras.items),
                extras_total=self.extras.total,
                pending_all=list(self.pending_all.values()),
            )
        )

    def _check(self, name: str) -> _StreamCheck:
        check = _StreamCheck(self, name)
        check.run(name)
        return check

    def _checks(self, names: list[str]) -> Iterator[_StreamCheck]:
        """The checks of `names`, in order; with workers, a bounded window runs concurrently."""
        if self.workers <= 1:
            for name in names:
                yield self._check(name)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="verify") as pool:
            window: deque[Future[_StreamCheck]] = deque()
            for name in names:
                window.append(pool.submit(self._check, name))
                if len(window) >= 2 * self.workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _merge(self, check: _StreamCheck) -> None:
        report = self.report
        report.streams_checked += 1
        if check.diffs.total:
            report.streams_differing += 1
            self.pending_all.pop(check.name, None)  # found already, by the stream's reads
        else:
            report.streams_equal += 1
        report.events_compared += check.events_compared
        report.events_unverified += check.events_unverified
        report.notes.extend(check.notes[: max(0, _MAX_NOTES - len(report.notes))])
        self.diffs.total += check.diffs.total - len(check.diffs.items)
        for difference in check.diffs.items:
            self.diffs.append(difference)

    # ------------------------------------------------------------------ discovery
    def _scan(self, store: EventStore) -> Iterator[Event]:
        position: int | None = None
        while True:
            n = 0
            for event in store.read_all_after(position, PAGE):
                n += 1
                position = event.commit_position
                yield event
            if n < PAGE:
                return

    def _all_records(self) -> AllRecords | None:
        """The `$all` tallies (core/verify_all.py), unless the scavenge filter makes them
        depend on when it ran."""
        if self.job.filters.scavenge:
            self.report.notes.append(
                "scavenge: events hidden from stream reads are not compared in $all"
            )
            return None
        dead: set[tuple[str, int]] = set()
        if self.job.dead_letter:
            for letter in self.target.read_stream(rules.dead_letter_stream(self.job.job_id)):
                record = rules.json_object(letter.data) or {}
                dead.add((str(record.get("stream")), record.get("revision", -1)))  # type: ignore[arg-type]
        filters, transform = self.job.filters, self.transform

        def copied_ids(event: Event) -> list[uuid.UUID]:
            if rules.copied_kind(filters, event) is not rules.Kind.EVENT:
                return []
            if (event.stream, event.revision) in dead:
                return []
            outputs = rules.apply_transform(transform, event) if transform else [event]
            return [output.event_id for output in outputs]

        ordered = self.job.mode == "ordered"
        return AllRecords(copied_ids, ordered)

    def _user_streams(
        self, store: EventStore, accepts: Callable[[str], bool], tally: AllRecords | None
    ) -> set[str]:
        names: set[str] = set()
        for event in self._scan(store):
            name = _user_stream_of(event)
            if name is not None and name not in names and accepts(name):
                names.add(name)
            if tally is not None:
                tally.add_source(event)
        return names

    def _find_extra_streams(self, expected: set[str], tally: AllRecords | None) -> None:
        self.report.extra_streams_checked = True
        seen: set[str] = set()
        accepts = self.job.filters.accepts_stream
        for event in self._scan(self.target):
            if tally is not None and _is_user_event(event) and accepts(event.stream):
                tally.add_target(event)
            name = _user_stream_of(event)
            if name is None or name in expected or name in seen:
                continue
            seen.add(name)
            self.extras.add(
                name,
                DifferenceKind.EXTRA_STREAM,
                "on the target but not in the source"
                + ("" if self.job.filters.accepts_stream(name) else " (excluded by the filters)"),
            )
        self.report.extra_streams = len(seen)


class _StreamCheck:
    """The comparison of one stream; its own differences and counts, merged by the caller."""

    def __init__(self, verifier: _Verifier, name: str) -> None:
        self.name = name
        self.job = verifier.job
        self.source = verifier.source
        self.target = verifier.target
        self.transform = verifier.transform
        self.diffs = _Differences(verifier.max_differences)
        self.events_compared = 0
        self.events_unverified = 0
        self.notes: list[str] = []

    def _open(self, store: EventStore, name: str) -> _Side:
        try:
            first = store.read_stream(name, limit=PAGE)
            metadata = store.stream_metadata(name)
        except StreamTombstoned:
            return _Side(tombstoned=True)
        return _Side(False, metadata if isinstance(metadata, dict) else {}, first)

    def run(self, name: str) -> None:
        src = self._open(self.source, name)
        tgt = self._open(self.target, name)
        if src.state != tgt.state:
            detail = f"source is {src.state}, target is {tgt.state}"
            if tgt.state == "live":
                detail += f" ({'with' if tgt.first_page else 'no'} visible events)"
            self.diffs.add(name, DifferenceKind.DELETED_STATE, detail)
            return
        if src.tombstoned:
            return
        self._compare_metadata(name, src.metadata, tgt.metadata)
        if src.soft_deleted:
            return
        self._compare_events(name, src, tgt)

    def _compare_metadata(self, name: str, source: dict, target: dict) -> None:
        keys = sorted((set(source) | set(target)) - {"$tb"})
        different = [k for k in keys if source.get(k, _ABSENT) != target.get(k, _ABSENT)]
        if not different:
            return
        parts = []
        for key in different[:5]:
            s, t = source.get(key, _ABSENT), target.get(key, _ABSENT)
            parts.append(f"{key}: source {_short(s, 30)}, target {_short(t, 30)}")
        more = f" (+{len(different) - 5} more keys)" if len(different) > 5 else ""
        self.diffs.add(
            name, DifferenceKind.METADATA, "stream metadata differs: " + "; ".join(parts) + more
        )

    # ------------------------------------------------------------------- events
    def _visible(self, store: EventStore, name: str, first: list[Event]) -> Iterator[Event]:
        page = first
        while True:
            yield from page
            if len(page) < PAGE:
                return
            page = store.read_stream(name, from_revision=page[-1].revision + 1, limit=PAGE)

    def _skips(self, event: Event) -> bool:
        kind = rules.classify(event)
        return kind is not rules.Kind.EVENT or not self.job.filters.accepts_event_type(event.type)

    def _expected(self, events: Iterable[Event]) -> Iterator[_Print]:
        """The source's visible events as the relay writes them to the target."""
        with_original = self.job.original_metadata
        multi_append = self.job.multi_append
        for event in events:
            if self._skips(event):
                continue
            outputs = rules.apply_transform(self.transform, event) if self.transform else [event]
            for output in outputs:
                out = rules.out_event(output, with_original=with_original)
                yield _Print.expected(out, event.revision, multi_append)

    def _actual(self, name: str, first: list[Event]) -> Iterator[_Print]:
        for event in self._visible(self.target, name, first):
            yield _Print.of(event)

    def _compare_events(self, name: str, src: _Side, tgt: _Side) -> None:
        source_events: Iterable[Event] = self._visible(self.source, name, src.first_page)
        max_count = src.metadata.get("$maxCount")
        reshaped = False  # the target's `$maxCount` window cannot be the source's
        if isinstance(max_count, int) and not isinstance(max_count, bool) and max_count > 0:
            # Bounded: the source shows at most `$maxCount` events.
            window = list(source_events)
            reshaped = self.transform is not None or any(self._skips(e) for e in window)
            source_events = window
        expected = self._expected(source_events)
        actual = self._actual(name, tgt.first_page)
        if reshaped and self.transform is not None:
            # A transform that makes several events of one leaves the target's `$maxCount`
            # window shorter than the source's: only the last `$maxCount` expected events
            # can show there.
            buffered = list(expected)
            hidden = max(0, len(buffered) - max_count)
            if hidden:
                self.events_unverified += hidden
                self.notes.append(
                    f"{name}: {hidden} expected event(s) not verifiable: the target's $maxCount "
                    "hides them (the transform made more events than the source has)"
                )
            expected = iter(buffered[hidden:])
        matched = 0
        rest_expected: list[_Print] = []
        rest_actual: list[_Print] = []
        for e, a in zip_longest(expected, actual):
            if e is not None and a is not None and e.event_id == a.event_id:
                matched += 1
                problem = e.mismatch(a)
                if problem:
                    self._different(name, e, a, problem)
                continue
            rest_expected = [e] if e is not None else []
            rest_actual = [a] if a is not None else []
            rest_expected.extend(expected)
            rest_actual.extend(actual)
            break
        self.events_compared += matched + max(len(rest_expected), len(rest_actual))
        if not rest_expected and not rest_actual:
            return
        if matched == 0 and not rest_actual and not tgt.metadata:
            first = rest_expected[0]
            self.diffs.add(
                name,
                DifferenceKind.MISSING_STREAM,
                f"{len(rest_expected)} event(s) expected from source revision {first.revision}; "
                "the target has neither events nor metadata for the stream",
                source_revision=first.revision,
                event_id=first.event_id,
            )
            return
        if matched == 0 and (reshaped or _has_max_age(src.metadata)):
            wanted = {p.event_id for p in rest_expected}
            skip = 0
            while skip < len(rest_actual) and rest_actual[skip].event_id not in wanted:
                skip += 1
            if skip:
                self.events_unverified += skip
                self.notes.append(
                    f"{name}: {skip} older target event(s) not verifiable: the source stream no "
                    "longer shows them ($maxAge, or a $maxCount window over records the job "
                    "does not copy)"
                )
                del rest_actual[:skip]
        self._classify(name, rest_expected, rest_actual)

    def _different(self, name: str, e: _Print, a: _Print, detail: str) -> None:
        self.diffs.add(
            name,
            DifferenceKind.DIFFERENT_EVENT,
            detail,
            source_revision=e.revision,
            target_revision=a.revision,
            event_id=e.event_id,
        )

    def _classify(self, name: str, expected: list[_Print], actual: list[_Print]) -> None:
        """Name the differences of two diverging event sequences.

        Events in both, in the longest run that keeps the source order, are anchors; the other
        common events are out of order. Between two anchors, source-only and target-only events
        are paired as different events (another id at that place); the rest are missing/extra.
        """
        index = {p.event_id: i for i, p in enumerate(expected)}
        seen: set[str] = set()
        common: list[tuple[int, int]] = []  # (position in actual, position in expected)
        duplicates: set[int] = set()
        for j, p in enumerate(actual):
            if p.event_id in seen:
                duplicates.add(j)
                continue
            seen.add(p.event_id)
            if p.event_id in index:
                common.append((j, index[p.event_id]))
        anchors = _longest_increasing(common)
        anchor_set = set(anchors)
        for j, i in common:
            if (j, i) in anchor_set:
                problem = expected[i].mismatch(actual[j])
                if problem:
                    self._different(name, expected[i], actual[j], problem)
            else:
                self.diffs.add(
                    name,
                    DifferenceKind.ORDER,
                    f"out of order: source revision {expected[i].revision} is at another place "
                    "on the target",
                    source_revision=expected[i].revision,
                    target_revision=actual[j].revision,
                    event_id=expected[i].event_id,
                )
        in_actual = {i for _, i in common}
        bounds = [(-1, -1), *anchors, (len(actual), len(expected))]
        for (j0, i0), (j1, i1) in pairwise(bounds):
            only_expected = [expected[i] for i in range(i0 + 1, i1) if i not in in_actual]
            only_actual = [
                actual[j]
                for j in range(j0 + 1, j1)
                if actual[j].event_id not in index and j not in duplicates
            ]
            for e, a in zip(only_expected, only_actual, strict=False):
                detail = f"another event at this place: target holds {a.event_id}"
                problem = e.mismatch(a)
                self._different(name, e, a, detail + (f" ({problem})" if problem else ""))
            for e in only_expected[len(only_actual) :]:
                self.diffs.add(
                    name,
                    DifferenceKind.MISSING_EVENT,
                    f"source revision {e.revision} is not on the target",
                    source_revision=e.revision,
                    event_id=e.event_id,
                )
            for a in only_actual[len(only_expected) :]:
                self.diffs.add(
                    name,
                    DifferenceKind.EXTRA_EVENT,
                    f"target revision {a.revision} is not in the source",
                    target_revision=a.revision,
                    event_id=a.event_id,
                )
        for j in sorted(duplicates):
            self.diffs.add(
                name,
                DifferenceKind.EXTRA_EVENT,
                f"target revision {actual[j].revision} repeats an event id already in the stream",
                target_revision=actual[j].revision,
                event_id=actual[j].event_id,
            )


def _has_max_age(metadata: dict) -> bool:
    max_age = metadata.get("$maxAge")
    return isinstance(max_age, int) and not isinstance(max_age, bool) and max_age > 0


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


_ABSENT: Any = _Absent()


def _is_user_event(event: Event) -> bool:
    return not event.stream.startswith("$") and not event.type.startswith("$")


def _user_stream_of(event: Event) -> str | None:
    kind = rules.classify(event)
    if kind is rules.Kind.SKIP:
        return None
    return event.stream[2:] if kind is rules.Kind.METADATA else event.stream


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of `pairs` (ordered by their first item) whose second items
    increase: the common events that keep the source's order."""
    tails: list[int] = []  # smallest last second-item of an increasing run of each length
    tail_at: list[int] = []  # index in pairs of that last item
    previous: list[int] = [-1] * len(pairs)
    for k, (_, i) in enumerate(pairs):
        n = bisect.bisect_left(tails, i)
        if n == len(tails):
            tails.append(i)
            tail_at.append(k)
        else:
            tails[n] = i
            tail_at[n] = k
        previous[k] = tail_at[n - 1] if n > 0 else -1
    out: list[tuple[int, int]] = []
    k = tail_at[-1] if tail_at else -1
    while k >= 0:
        out.append(pairs[k])
        k = previous[k]
    return out[::-1]
