"""What is replicated, and how each source record becomes target writes.

- user events (stream and type not `$`-prefixed) are copied with id, type, data, content type
  and metadata kept byte for byte; `$original*` keys are inserted into JSON-object metadata
  (before its closing brace, no user byte changed) unless it already holds one;
- `$metadata` events of user streams become `$metadata` events of the target's metastream,
  with `$tb` (a source revision) translated by the engine;
- `$streamDeleted` (tombstones) of user streams become tombstones;
- everything else (links `$>`, system streams, other system events) is skipped: system
  projections re-create links on the target.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from core.errors import ConfigError, TransformError
from core.model import Event, OutEvent

if TYPE_CHECKING:
    from core.config import FilterConfig

ORIGINAL_REVISION = "$originalStreamRevision"
ORIGINAL_POSITION = "$originalPosition"
ORIGINAL_CREATED = "$originalCreated"


class Kind(Enum):
    EVENT = "event"
    METADATA = "metadata"
    TOMBSTONE = "tombstone"
    SKIP = "skip"


def classify(event: Event) -> Kind:
    if event.type == "$metadata" and event.stream.startswith("$$"):
        return Kind.SKIP if event.stream[2:].startswith("$") else Kind.METADATA
    if event.type == "$streamDeleted" and not event.stream.startswith("$"):
        return Kind.TOMBSTONE
    if event.stream.startswith("$") or event.type.startswith("$"):
        return Kind.SKIP
    return Kind.EVENT


def copied_kind(filters: FilterConfig, event: Event) -> Kind:
    """What the job's stream and event-type filters make of this `$all` record: the kind of
    target write it becomes, or SKIP. Event-type filters apply to events only; metadata and
    tombstones follow their stream."""
    kind = classify(event)
    if kind is Kind.EVENT:
        return kind if filters.accepts(event.stream, event.type) else Kind.SKIP
    if kind is Kind.METADATA:
        return kind if filters.accepts_stream(event.stream[2:]) else Kind.SKIP
    if kind is Kind.TOMBSTONE:
        return kind if filters.accepts_stream(event.stream) else Kind.SKIP
    return kind


PROVENANCE_KEYS = (ORIGINAL_REVISION, ORIGINAL_POSITION, ORIGINAL_CREATED)


def _provenance(event: Event) -> tuple[bytes, dict[str, object]]:
    """The relay's keys as JSON members, byte for byte what `json.dumps` gives for them
    (compact separators, the keys in this order): integers, and an ISO 8601 instant (ASCII,
    nothing to escape) or null; and the same keys as the values JSON gives them back.
    Formatted directly: this runs once per copied event."""
    revision, position = int(event.revision), int(event.commit_position)
    created = event.created.isoformat() if event.created else None
    members = _MEMBERS % (revision, position, b'"%s"' % created.encode() if created else b"null")
    return members, {
        ORIGINAL_REVISION: revision,
        ORIGINAL_POSITION: position,
        ORIGINAL_CREATED: created,
    }


_MEMBERS = f'"{ORIGINAL_REVISION}":%d,"{ORIGINAL_POSITION}":%d,"{ORIGINAL_CREATED}":%s'.encode()


def json_object(metadata: bytes) -> dict[str, object] | None:
    """Metadata as the JSON object it holds (UTF-8, as the server reads it), or None."""
    try:
        value = json.loads(metadata.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def add_original_metadata(metadata: bytes, event: Event) -> bytes:
    """The user's metadata with the relay's provenance keys inserted and every user byte kept:
    the keys go just before the object's closing brace; empty metadata becomes an object of
    them. Unchanged when the metadata is not a JSON object (whitespace alone included), or
    already holds an `$original*` key: those describe the event's origin (data migrated
    before), and a mix of the user's keys and the relay's would describe two origins."""
    return _with_original(metadata, event)[0]


def _with_original(metadata: bytes, event: Event) -> tuple[bytes, dict[str, object] | None]:
    """`add_original_metadata`, and the JSON object the result holds when it was parsed on the
    way (None when the metadata is not a JSON object): what `json.loads` gives for the result,
    since the inserted keys are not among the user's and go last."""
    if not metadata:
        members, keys = _provenance(event)
        return b"{" + members + b"}", keys
    existing = json_object(metadata)
    if existing is None:
        return metadata, None
    if not existing.keys().isdisjoint(PROVENANCE_KEYS):
        return metadata, existing
    end = metadata.rindex(b"}")
    separator = b"," if existing else b""
    members, keys = _provenance(event)
    return metadata[:end] + separator + members + metadata[end:], existing | keys


def read_original_position(metadata: bytes) -> int | None:
    """The source position a target event's metadata claims it came from, if any. A claim
    only: user metadata may hold the key too (core/engine/locate.py checks it in the source)."""
    value = _metadata_value(metadata, ORIGINAL_POSITION)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_original_revision(metadata: bytes) -> int | None:
    value = _metadata_value(metadata, ORIGINAL_REVISION)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata_value(metadata: bytes, key: str) -> object:
    if key.encode() not in metadata:
        return None
    value = json_object(metadata)
    return value.get(key) if value is not None else None


def out_event(event: Event, *, with_original: bool) -> OutEvent:
    if not with_original:
        return OutEvent(event.event_id, event.type, event.content_type, event.data, event.metadata)
    metadata, parsed = _with_original(event.metadata, event)
    plain = None if metadata is event.metadata else event.metadata
    return OutEvent(
        event.event_id, event.type, event.content_type, event.data, metadata, plain, parsed
    )


def dead_letter_stream(job_id: str) -> str:
    """Where the job records the events the target refused (`dead_letter = true`)."""
    return f"$esdb-relay-dead-letters-{job_id}"


def derive_id(source_id: uuid.UUID, index: int) -> uuid.UUID:
    """A stable id for the index-th event a transform makes from one source event."""
    return uuid.uuid5(source_id, str(index))


Transform = Callable[[Event], object]


def load_transform(spec: str | None) -> Transform | None:
    if not spec:
        return None
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(
            f"transform: cannot import module {module_name!r}: {type(e).__name__}: {e}",
            field="transform",
            hint="make the module importable (on PYTHONPATH or packaged with the function)",
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(
            f"transform: {module_name!r} has no function {function_name!r}",
            field="transform",
            hint="use module:function naming a callable that takes one event",
        )
    return function


def apply_transform(transform: Transform, event: Event) -> list[Event]:
    """Run the user's hook: it returns None (drop), one Event, or a list of Events.

    Outputs keep the source's stream/position fields they are given; outputs beyond the first
    that reuse the source id get a derived id, so a replay produces the same ids.
    """
    try:
        result = transform(event)
    except Exception as e:
        raise TransformError(
            f"transform failed on event {event.revision} of {event.stream!r} "
            f"(position {event.commit_position}): {type(e).__name__}: {e}"
        ) from e
    if result is None:
        return []
    outputs = [result] if isinstance(result, Event) else result
    if not isinstance(outputs, list) or not all(isinstance(o, Event) for o in outputs):
        raise TransformError(
            f"transform returned {type(result).__name__} for event {event.revision} of "
            f"{event.stream!r}; expected None, an Event or a list of Events"
        )
    fixed = []
    for i, output in enumerate(outputs):
        if i > 0 and output.event_id == event.event_id:
            output = _replace_id(output, derive_id(event.event_id, i))
        fixed.append(output)
    return fixed


def _replace_id(event: Event, new_id: uuid.UUID) -> Event:
    from dataclasses import replace

    return replace(event, event_id=new_id)
