"""The records of KurrentDB's v2 appends: validation, size, and the event they become.

KurrentDB src/KurrentDB.Api.V2/Modules/Streams/Model/AppendRecordExtensions.cs (PreProcessRecord,
CalculateSizeOnDisk), Validators/*.cs (v25.1.0 and v26.1.0 where they differ) and Mapping.cs
(MapToEvent); a v1 read shows the properties as the metadata
EventRecord.SynthesizeMetadataFromProperties renders: the properties as JSON plus
`$schema.name` and `$schema.format`; the content type is application/json for the Json format,
application/octet-stream otherwise.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import uuid
from dataclasses import dataclass

from google.protobuf import struct_pb2

from core.protocol.kurrentdb.protocol.v2.streams import shared_pb2, streams_pb2
from esdb_emulator.store import ProposedEvent
from esdb_emulator.v2_errors import Failures

# ClusterVNodeOptions.MaxAppendEventSize default (TFConsts.MaxLogRecordSize).
MAX_RECORD_SIZE = 16 * 1024 * 1024
_JSON = "application/json"
_OCTET_STREAM = "application/octet-stream"
_JSON_FORMAT = struct_pb2.Value(string_value="Json")
_FORMAT_KEY = "$schema.format"
_FORMAT_NAMES = {
    shared_pb2.SCHEMA_FORMAT_JSON: "Json",
    shared_pb2.SCHEMA_FORMAT_PROTOBUF: "Protobuf",
    shared_pb2.SCHEMA_FORMAT_AVRO: "Avro",
    shared_pb2.SCHEMA_FORMAT_BYTES: "Bytes",
}
_ASCII_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_.$:-]+$")  # 25.1: GeneratedRegex, `$` before \n too


@dataclass(frozen=True, slots=True)
class Rules:
    """What differs between the versions' validators."""

    unicode_schema_names: bool  # 26.1: \p{L}\p{N} and NFC; 25.1: ASCII letters and digits
    record_stream: bool  # 26.1: AppendRecord.stream is checked when set


def stream_name_failures(stream: str, field: str = "Stream") -> Failures:
    """StreamNameValidator: NotEmpty, NotEqual("$$"), display name "Stream"."""
    if not stream:
        return [(field, "Stream must not be empty.")]
    if stream == "$$":
        return [(field, "Stream must not be '$$'.")]
    return []


# The form `str(uuid.UUID(...))` gives; every client sends ids so. Others go through uuid.UUID.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _is_guid(text: str) -> bool:
    if _CANONICAL_UUID.fullmatch(text):
        return text != _NIL_UUID
    try:
        return uuid.UUID(text).int != 0
    except ValueError:
        return False


def _uuid_text(text: str) -> str:
    """str(uuid.UUID(text)), without the parse for an id already in that form."""
    return text if _CANONICAL_UUID.fullmatch(text) else str(uuid.UUID(text))


def _schema_name_failures(name: str, rules: Rules) -> Failures:
    return list(_cached_schema_name_failures(name, rules))


@functools.lru_cache(maxsize=4096)
def _cached_schema_name_failures(name: str, rules: Rules) -> tuple[tuple[str, str], ...]:
    """A schema name's failures: few distinct names, each checked once."""
    return tuple(_checked_schema_name_failures(name, rules))


def _checked_schema_name_failures(name: str, rules: Rules) -> Failures:
    field = "Schema.Name"
    if rules.unicode_schema_names:
        failures = [] if name else [(field, "Schema name must not be empty")]
        if name and not unicodedata.is_normalized("NFC", name):
            failures.append((field, "Schema name must be in Unicode NFC (Normalization Form C)"))
        body = name[:-1] if name.endswith("\n") else name
        if not body or not all(unicodedata.category(c)[0] in "LN" or c in "_.$:-" for c in body):
            failures.append(
                (
                    field,
                    "Schema name can only contain unicode letters, digits, underscores, dashes, "
                    f"periods, colons, and dollar signs. Attempted Value: {name}",
                )
            )
        return failures
    failures = [] if name else [(field, "Schema name must not be empty.")]
    if not _ASCII_SCHEMA_NAME.search(name):
        failures.append(
            (
                field,
                "Schema name can only contain alphanumeric characters, underscores, dashes, "
                f"periods, colons, and dollar signs. Attempted Value: {name}",
            )
        )
    return failures


def record_failures(record: streams_pb2.AppendRecord, rules: Rules) -> Failures:
    """AppendRecordValidator, on the record PreProcessRecord prepared."""
    failures: Failures = []
    if rules.record_stream and record.HasField("stream"):
        failures += stream_name_failures(record.stream)
    if record.HasField("record_id") and not _is_guid(record.record_id):
        failures.append(("RecordId", "Record ID must be a valid and non-empty UUID."))
    schema = record.schema
    if schema.format == shared_pb2.SCHEMA_FORMAT_UNSPECIFIED:
        failures.append(("Schema.Format", "Schema format must not be Unspecified."))
    elif schema.format not in _FORMAT_NAMES:
        failures.append(("Schema.Format", "Schema format must be one of Json, Protobuf or Bytes."))
    failures += _schema_name_failures(schema.name, rules)
    if schema.HasField("id") and not _is_guid(schema.id):
        failures.append(("Schema.Id", "Schema ID must be a valid and non-empty UUID"))
    properties = record.properties
    for i, key in enumerate(properties):  # the map's own order, as items() gives it
        value = properties[key]
        if not key:
            failures.append((f"Properties[{i}].Key", "Property keys must not be empty."))
        if not _has_kind(value):  # as newer servers check (after 26.1)
            failures.append((f"Properties[{i}].Value", "Property values must have a type set."))
    return failures


@dataclass(frozen=True, slots=True)
class Prepared:
    event: ProposedEvent
    size: int  # CalculateSizeOnDisk: data + properties as a Struct + schema name (UTF-8)


def prepare(record: streams_pb2.AppendRecord) -> Prepared:
    """PreProcessRecord (a record id when none is given, the format and schema id as
    properties), MapToEvent and the size; the record must have passed record_failures."""
    record_id = record.record_id if record.HasField("record_id") else str(uuid.uuid4())
    schema = record.schema
    given = record.properties
    properties: dict[str, struct_pb2.Value] = {key: given[key] for key in given}
    is_json = schema.format == shared_pb2.SCHEMA_FORMAT_JSON
    if not is_json:
        properties["$schema.format"] = struct_pb2.Value(string_value=_FORMAT_NAMES[schema.format])
    if schema.HasField("id"):
        properties["$schema.id"] = struct_pb2.Value(string_value=schema.id)
    size = len(record.data) + _struct_size(properties) + len(schema.name.encode())
    if properties and ("$schema.name" in properties or (is_json and _FORMAT_KEY in properties)):
        shown = dict(properties)  # a property of that name keeps its place, with the new value
        shown["$schema.name"] = struct_pb2.Value(string_value=schema.name)
        if is_json:
            shown["$schema.format"] = struct_pb2.Value(string_value="Json")
        metadata = _format_fields(shown)
    elif properties:  # the same text, the two `$schema` entries rendered once per name
        items = _rendered_items(properties)
        items.append(_schema_items(schema.name, is_json))
        metadata = "{ " + ", ".join(items) + " }"
    else:
        metadata = _bare_metadata(schema.name)
    event = ProposedEvent(
        event_id=_uuid_text(record_id),
        type=schema.name,
        content_type=_JSON if is_json else _OCTET_STREAM,
        data=record.data,
        metadata=metadata.encode(),
    )
    return Prepared(event, size)


def _struct_size(fields: dict[str, struct_pb2.Value]) -> int:
    if not fields:
        return 0
    struct = struct_pb2.Struct()
    for key, value in fields.items():
        struct.fields[key].CopyFrom(value)
    return struct.ByteSize()


@functools.lru_cache(maxsize=4096)
def _bare_metadata(schema_name: str) -> str:
    """What a JSON record without properties shows as metadata."""
    name = struct_pb2.Value(string_value=schema_name)
    return _format_fields({"$schema.name": name, "$schema.format": _JSON_FORMAT})


def _has_kind(value: struct_pb2.Value) -> bool:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return all(_has_kind(v) for v in value.struct_value.fields.values())
    if kind == "list_value":
        return all(_has_kind(v) for v in value.list_value.values)
    return kind is not None


def _format_fields(fields: dict[str, struct_pb2.Value]) -> str:
    """Google.Protobuf's JsonFormatter.Default rendering of a Struct: `{ "k": v, ... }`."""
    if not fields:
        return "{ }"
    return "{ " + ", ".join(_rendered_items(fields)) + " }"


def _rendered_items(fields: dict[str, struct_pb2.Value]) -> list[str]:
    return [f"{_json_key(k)}: {_format_value(v)}" for k, v in fields.items()]


@functools.lru_cache(maxsize=4096)
def _schema_items(schema_name: str, is_json: bool) -> str:
    """The rendered `$schema.name` (and, for Json, `$schema.format`) entries that end the
    metadata of a record whose properties have neither."""
    items = [f"{_json_key('$schema.name')}: {_json_string(schema_name)}"]
    if is_json:
        items.append(f"{_json_key(_FORMAT_KEY)}: {_json_string('Json')}")
    return ", ".join(items)


def _format_value(value: struct_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "number_value":
        return _format_double(value.number_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "struct_value":
        return _format_fields(dict(value.struct_value.fields.items()))
    if kind == "list_value":
        if not value.list_value.values:
            return "[ ]"
        return "[ " + ", ".join(_format_value(v) for v in value.list_value.values) + " ]"
    return "null"


def _format_double(number: float) -> str:
    # double.ToString("r"): integers without a fraction, exponents as E+XX.
    if math.isfinite(number) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number).replace("e", "E")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"
# JsonFormatter escapes control characters and the HTML-sensitive <>&=' as \uXXXX.
_NEEDS_ESCAPE = re.compile("[\"\\\\\x00-\x1f\x7f-\x9f<>&='\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return _ESCAPES.get(c) or f"\\u{ord(c):04x}"


def _json_string(text: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape, text) + '"'


# Property keys repeat from record to record (`$originalPosition`, ...): each rendered once.
_json_key = functools.lru_cache(maxsize=4096)(_json_string)
