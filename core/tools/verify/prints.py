"""What verify compares of one event, without holding its payload: a print, and the forms the
relay may have written its metadata in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core import rules
from core.eventstore.v2 import JSON_CONTENT_TYPE, event_problem
from core.model import Event, OutEvent

_DIGEST_HEX = 12  # hex characters of a sha256 shown in a detail


@dataclass(frozen=True, slots=True)
class Print:
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
    def of(cls, event: Event) -> Print:
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
            canon_digest(metadata),
        )

    @classmethod
    def expected(cls, out: OutEvent, revision: int, multi_append: bool) -> Print:
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
            v2_value_digest(out) if multi_append else None,
        )

    def same_metadata(self, other: Print) -> bool:
        if other.metadata_shas[0] in self.metadata_shas:
            return True
        return self.metadata_value is not None and self.metadata_value == other.metadata_value

    def mismatch(self, other: Print) -> str | None:
        """What differs between the expected event (self) and the target's (other)."""
        parts = []
        if self.type != other.type:
            parts.append(f"type {short(self.type)} != {short(other.type)}")
        if self.content_type != other.content_type:
            parts.append(f"content type {short(self.content_type)} != {short(other.content_type)}")
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


def canon_digest(metadata: bytes) -> bytes | None:
    """The metadata's digest as a JSON object; None when it is not one."""
    if not metadata.lstrip().startswith(b"{"):
        return None
    value = rules.json_object(metadata)
    return _digest(value) if value is not None else None


def v2_value_digest(out: OutEvent) -> bytes | None:
    """A v2 append stores metadata as properties; v1 reads show them as JSON with
    `$schema.name` (the event type) and `$schema.format` set by the server
    (EventRecord.SynthesizeMetadataFromProperties), numbers as doubles. The relay sends an
    event that way only when that changes nothing else (core.eventstore.v2.event_problem)."""
    if event_problem(out) is not None:
        return None
    value = rules.json_object(out.metadata) if out.metadata else {}
    if value is None:
        return None
    value["$schema.name"] = out.type
    value["$schema.format"] = "Json" if out.content_type == JSON_CONTENT_TYPE else "Bytes"
    return _digest(value)


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
