"""The tests' own oracle: what the target must hold once the relay has copied a source.

Written from the documented rules (docs/reliability.md, "What arrives on the target"), never
from the relay's code: it imports nothing from core/. The property tests and the kill soaks
end with it, and core/verify is checked against it. It reads both sides through the
emulator's store, as a stream read and a `$all` read of the server return them:

- per user stream the job accepts: its state (live, soft-deleted, tombstoned) and the reader's
  view: the source stream's visible events, less the event types the job skips, through the
  job's transform (given to the oracle as the test's own version of it), equal on the
  target (id, type, content type, data, metadata as below), in order. Where the source's
  window cannot be reproduced (a `$maxCount` window holding records the job does not copy,
  `$maxAge`: documented), the target may show older copies of the stream's events before the
  window, nothing else;
- its stream metadata equal, but `$tb` (source revisions there, target revisions here: it is
  compared by its effect, the view);
- `$all` by id: every copied event exactly once, none the source does not hold, and in
  ordered mode in the source's `$all` order;
- nothing of filtered-out streams, system streams or links.

With the scavenge filter, the events the source's readers no longer see are not copied (the
oracle judges that at the end: for a source that took no writes while the relay ran).

Metadata: byte for byte, except that when the job adds provenance, metadata that is empty or
a JSON object holding no `$original*` key gets `"$originalStreamRevision"`,
`"$originalPosition"` and `"$originalCreated"` inserted just before its closing brace, every
user byte kept; through a multi-stream (v2) append, by value: the same JSON object with the
server's `$schema.name` (the type) and `$schema.format` (`Json` or `Bytes`), numbers as doubles.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from esdb_emulator.store import DELETED_STREAM, Record, Store, StreamDeleted, StreamNotFound

PROVENANCE = ("$originalStreamRevision", "$originalPosition", "$originalCreated")


@dataclass(frozen=True)
class Job:
    """What the oracle needs to know of the job (the names are the job configuration's)."""

    include_streams: tuple[str, ...] = ()
    exclude_streams: tuple[str, ...] = ()
    exclude_event_types: tuple[str, ...] = ()
    original_metadata: bool = True
    multi_append: bool = False
    scavenge: bool = False  # events the source's readers no longer see are not copied
    ordered: bool = True  # one writer: the target's `$all` keeps the source's order
    # The job's transform, as the test writes it again for records: a record's outputs.
    transform: Callable[[Record], list[Record]] | None = None
    after: int = -1  # the job copies source records after this `$all` position
    streams: Callable[[str], bool] = lambda name: True  # the streams this check looks at

    def accepts_stream(self, name: str) -> bool:
        if self.include_streams and not any(re.search(p, name) for p in self.include_streams):
            return False
        return not any(re.search(p, name) for p in self.exclude_streams)

    def accepts_type(self, type_: str) -> bool:
        return not type_.startswith("$") and not any(
            re.search(p, type_) for p in self.exclude_event_types
        )


@dataclass
class Report:
    streams: int = 0
    events_checked: int = 0
    differences: list[str] = field(default_factory=list)
    duplicates: int = 0
    missing: int = 0
    extra: int = 0
    out_of_order: bool = False

    @property
    def clean(self) -> bool:
        return not (
            self.differences or self.duplicates or self.missing or self.extra or self.out_of_order
        )


def compare(source: Store, target: Store, job: Job) -> Report:
    report = Report()
    names = sorted(
        {
            user_stream(r)
            for r in source.iter_all()
            if r.position > job.after and user_stream(r) is not None
        }
        - {None}
    )
    for name in names:
        if not job.streams(name):
            continue
        if not job.accepts_stream(name):
            if name in target.stream_names() or "$$" + name in target.stream_names():
                report.differences.append(f"{name}: filtered out, yet on the target")
            continue
        report.streams += 1
        _compare_stream(source, target, job, name, report)
    _compare_all(source, target, job, report)
    return report


def user_stream(record: Record) -> str | None:
    """The user stream a `$all` record belongs to (its metadata stream's too), or None."""
    if record.stream.startswith("$$") and not record.stream.startswith("$$$"):
        return record.stream[2:]
    if record.stream.startswith("$") or record.type == "$>":
        return None
    return record.stream


# ------------------------------------------------------------------------------ streams
def view(store: Store, name: str) -> str | list[Record]:
    try:
        return store.visible_records(name)
    except StreamDeleted:
        return "tombstoned"
    except StreamNotFound:
        metadata = store.stream_metadata(name)
        return "soft-deleted" if metadata.get("$tb") == DELETED_STREAM else "absent"


def _compare_stream(source: Store, target: Store, job: Job, name: str, report: Report) -> None:
    expected = view(source, name)
    actual = view(target, name)
    metadata = source.stream_metadata(name)
    if expected != "tombstoned":  # (a soft-deleted stream keeps its custom keys)
        target_metadata = target.stream_metadata(name)
        if _without_tb(metadata) != _without_tb(target_metadata):
            report.differences.append(
                f"{name}: stream metadata {_without_tb(target_metadata)} != {_without_tb(metadata)}"
            )
    skipped_in_window = False
    if isinstance(expected, list):
        skipped_in_window = any(not job.accepts_type(r.type) for r in expected)
        expected = [o for r in expected if job.accepts_type(r.type) for o in outputs(job, r)]
        max_count = metadata.get("$maxCount")
        if job.transform is not None and _positive(max_count):
            expected = expected[-max_count:]  # the target's window counts the outputs
        if not expected and actual == "absent":
            actual = []
    if not isinstance(expected, list) or not isinstance(actual, list):
        if expected != actual:
            report.differences.append(
                f"{name}: source is {_state(expected)}, target {_state(actual)}"
            )
        return
    report.events_checked += len(expected)
    if _window_may_differ(metadata, skipped_in_window or job.transform is not None):
        older = {o.event_id for r in _records_of(source, name) for o in outputs(job, r)}
        first = expected[0].event_id if expected else None
        while actual and actual[0].event_id != first and actual[0].event_id in older:
            actual = actual[1:]
    if [r.event_id for r in actual] != [r.event_id for r in expected]:
        report.differences.append(
            f"{name}: target shows {len(actual)} events, source {len(expected)}: "
            f"{_first_difference(expected, actual)}"
        )
        return
    for s, t in zip(expected, actual, strict=True):
        problem = event_problem(job, s, t)
        if problem:
            report.differences.append(f"{name}@{s.revision}: {problem}")


def outputs(job: Job, record: Record) -> list[Record]:
    """The events the job writes for a source record: the transform's outputs, those after
    the first that keep the record's id given the documented derived id."""
    if job.transform is None or record.type.startswith("$"):
        return [record]
    found = []
    for i, output in enumerate(job.transform(record)):
        if i and output.event_id == record.event_id:
            derived = uuid.uuid5(uuid.UUID(record.event_id), str(i))
            output = replace(output, event_id=str(derived))
        found.append(output)
    return found


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _window_may_differ(metadata: dict, skipped_in_window: bool) -> bool:
    """`$maxAge` (the target's copies are younger), or a `$maxCount` window that holds records
    the job does not copy (the source counts them, the target cannot)."""
    max_age = metadata.get("$maxAge")
    if isinstance(max_age, int) and max_age > 0:
        return True
    max_count = metadata.get("$maxCount")
    return skipped_in_window and isinstance(max_count, int) and max_count > 0


def _records_of(store: Store, name: str) -> list[Record]:
    return [r for r in store.iter_all() if r.stream == name]


def _without_tb(metadata: dict) -> dict:
    return {k: v for k, v in metadata.items() if k != "$tb"}


def _state(value: object) -> str:
    return value if isinstance(value, str) else f"live ({len(value)} visible events)"


def _first_difference(expected: list[Record], actual: list[Record]) -> str:
    for i, (s, t) in enumerate(zip(expected, actual, strict=False)):
        if s.event_id != t.event_id:
            return f"at {i}: source revision {s.revision} ({s.event_id}) vs {t.event_id}"
    return "one is a prefix of the other"


# ----------------------------------------------------------------------------- metadata
def event_problem(job: Job, source: Record, target: Record) -> str | None:
    if (source.type, source.content_type, source.data) != (
        target.type,
        target.content_type,
        target.data,
    ):
        return "type, content type or data differ"
    wanted = expected_metadata(job, source)
    if target.metadata == wanted:
        return None
    if wanted != source.metadata:  # provenance inserted: `created` may round the other way
        wanted = _same_created(wanted, target.metadata)
        if target.metadata == wanted:
            return None
    if job.multi_append and written_by_v2(source, target, wanted):
        return None
    return f"metadata {target.metadata[:300]!r} is not {wanted[:300]!r}"


def _same_created(wanted: bytes, found: bytes) -> bytes:
    """`wanted` with the target's `$originalCreated` if within a microsecond of its own (the
    server reports 100 ns ticks; clients round them to microseconds one way or the other)."""
    key = b'"$originalCreated":"'
    if key not in wanted:
        return wanted
    start = wanted.index(key) + len(key)
    end = wanted.index(b'"', start)
    claimed = _object(found) or {}
    other = claimed.get("$originalCreated")
    if not isinstance(other, str):
        return wanted
    try:
        ours = datetime.fromisoformat(wanted[start:end].decode())
        theirs = datetime.fromisoformat(other)
    except ValueError:
        return wanted
    if abs((ours - theirs).total_seconds()) > 1e-6:
        return wanted
    return wanted[:start] + other.encode() + wanted[end:]


def expected_metadata(job: Job, source: Record) -> bytes:
    value = _object(source.metadata) if source.metadata else {}
    if not job.original_metadata or value is None or any(k in value for k in PROVENANCE):
        return source.metadata
    created = datetime.fromtimestamp(source.created / 10**7, UTC)
    keys = {
        "$originalStreamRevision": source.revision,
        "$originalPosition": source.position,
        "$originalCreated": created.isoformat(),
    }
    inserted = json.dumps(keys, separators=(",", ":"))[1:-1].encode()
    if not source.metadata:
        return b"{" + inserted + b"}"
    end = source.metadata.rindex(b"}")
    comma = b"," if value else b""
    return source.metadata[:end] + comma + inserted + source.metadata[end:]


def written_by_v2(source: Record, target: Record, wanted: bytes) -> bool:
    """The target's metadata is what a v2 append stores for `wanted`, and the event is one the
    relay may send that way (docs/multi-append.md)."""
    value = _object(wanted) if wanted else {}
    if value is None or not _v2_can_keep(value, source):
        return False
    fmt = "Json" if source.content_type == "application/json" else "Bytes"
    value = {**value, "$schema.name": source.type, "$schema.format": fmt}
    stored = _object(target.metadata)
    return stored is not None and _as_doubles(stored) == _as_doubles(value)


def _v2_can_keep(value: dict, source: Record) -> bool:
    fmt = "Json" if source.content_type == "application/json" else "Bytes"
    for key, kept in value.items():
        if key == "$schema.name" and kept != source.type:
            return False
        if key == "$schema.format" and kept != fmt:
            return False
        if key.startswith("$schema.") and key not in ("$schema.name", "$schema.format"):
            return False
    return _exact_as_double(value)


def _exact_as_double(value: object) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return abs(value) <= 2**53
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_exact_as_double(v) for v in value)
    return all(k and _exact_as_double(v) for k, v in value.items())


def _as_doubles(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_as_doubles(v) for v in value]
    return {k: _as_doubles(v) for k, v in value.items()}


def _object(metadata: bytes) -> dict | None:
    try:
        value = json.loads(metadata.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------------- $all
def _copied(job: Job, record: Record) -> bool:
    return (
        record.position > job.after
        and not record.stream.startswith("$")
        and job.accepts_type(record.type)
        and job.streams(record.stream)
        and job.accepts_stream(record.stream)
    )


def _compare_all(source: Store, target: Store, job: Job, report: Report) -> None:
    copied = [r for r in source.iter_all() if _copied(job, r)]
    if job.scavenge:  # (a source that took no writes while the relay ran)
        streams = {r.stream for r in copied}
        visible = {(name, r.event_id) for name in streams for r in _seen(source, name)}
        copied = [r for r in copied if (r.stream, r.event_id) in visible]
    wanted = [(r.stream, o.event_id) for r in copied for o in outputs(job, r)]
    got = [
        (r.stream, r.event_id)
        for r in target.iter_all()
        if not r.stream.startswith("$") and not r.type.startswith("$") and job.streams(r.stream)
    ]
    counts = Counter(got)
    report.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    report.missing = len(set(wanted) - set(got))
    report.extra = len(set(got) - set(wanted))
    report.out_of_order = job.ordered and _dedup(got) != wanted
    links = sum(1 for r in target.iter_all() if r.type == "$>" and job.streams(r.stream))
    if links:
        report.differences.append(f"{links} link events on the target")


def _seen(store: Store, name: str) -> list[Record]:
    found = view(store, name)
    return found if isinstance(found, list) else []


def _dedup(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
