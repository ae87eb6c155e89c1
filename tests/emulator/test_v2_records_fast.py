"""The v2 records' validation and preparation (esdb_emulator.v2_records) give exactly what they
gave before their hot paths got cheaper (issue 18: the target emulator's CPU per event): ids in
the canonical form skip the UUID parse, schema names are checked once, property keys rendered
once, the properties map walked by key. The reference below is the code as it was; Hypothesis
draws records of every shape (ids canonical, upper case, braced, nil or junk; any properties,
nested; every schema format; schema ids; both versions' rules) and compares.
"""

from __future__ import annotations

import uuid

from google.protobuf import struct_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.protocol.kurrentdb.protocol.v2.streams import shared_pb2, streams_pb2
from esdb_emulator import v2_records
from esdb_emulator.v2_records import (
    _FORMAT_NAMES,
    _JSON_FORMAT,
    Rules,
    _checked_schema_name_failures,
    _format_fields,
    _has_kind,
    _is_guid,
    _json_key,
    _json_string,
    _struct_size,
    _uuid_text,
    prepare,
    record_failures,
    stream_name_failures,
)


# ------------------------------------------------------------------ the code as it was
def _old_is_guid(text: str) -> bool:
    try:
        return uuid.UUID(text).int != 0
    except ValueError:
        return False


def _old_record_failures(record: streams_pb2.AppendRecord, rules: Rules) -> list:
    failures: list = []
    if rules.record_stream and record.HasField("stream"):
        failures += stream_name_failures(record.stream)
    if record.HasField("record_id") and not _old_is_guid(record.record_id):
        failures.append(("RecordId", "Record ID must be a valid and non-empty UUID."))
    schema = record.schema
    if schema.format == shared_pb2.SCHEMA_FORMAT_UNSPECIFIED:
        failures.append(("Schema.Format", "Schema format must not be Unspecified."))
    elif schema.format not in _FORMAT_NAMES:
        failures.append(("Schema.Format", "Schema format must be one of Json, Protobuf or Bytes."))
    failures += _checked_schema_name_failures(schema.name, rules)
    if schema.HasField("id") and not _old_is_guid(schema.id):
        failures.append(("Schema.Id", "Schema ID must be a valid and non-empty UUID"))
    for i, (key, value) in enumerate(record.properties.items()):
        if not key:
            failures.append((f"Properties[{i}].Key", "Property keys must not be empty."))
        if not _has_kind(value):
            failures.append((f"Properties[{i}].Value", "Property values must have a type set."))
    return failures


def _old_format_fields(fields: dict) -> str:
    if not fields:
        return "{ }"
    items = ", ".join(f"{_json_string(k)}: {_old_format_value(v)}" for k, v in fields.items())
    return "{ " + items + " }"


def _old_format_value(value: struct_pb2.Value) -> str:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return _json_string(value.string_value)
    if kind == "struct_value":
        return _old_format_fields(dict(value.struct_value.fields.items()))
    if kind == "list_value":
        if not value.list_value.values:
            return "[ ]"
        return "[ " + ", ".join(_old_format_value(v) for v in value.list_value.values) + " ]"
    return v2_records._format_value(value)  # numbers, bools, null: unchanged


def _old_prepare(record: streams_pb2.AppendRecord) -> tuple[str, str, str, bytes, bytes, int]:
    schema = record.schema
    properties = dict(record.properties.items())
    is_json = schema.format == shared_pb2.SCHEMA_FORMAT_JSON
    if not is_json:
        properties["$schema.format"] = struct_pb2.Value(string_value=_FORMAT_NAMES[schema.format])
    if schema.HasField("id"):
        properties["$schema.id"] = struct_pb2.Value(string_value=schema.id)
    size = len(record.data) + _struct_size(properties) + len(schema.name.encode())
    if properties:
        shown = dict(properties)
        shown["$schema.name"] = struct_pb2.Value(string_value=schema.name)
        if is_json:
            shown["$schema.format"] = struct_pb2.Value(string_value="Json")
        metadata = _old_format_fields(shown)
    else:
        name = struct_pb2.Value(string_value=schema.name)
        metadata = _old_format_fields({"$schema.name": name, "$schema.format": _JSON_FORMAT})
    content_type = "application/json" if is_json else "application/octet-stream"
    event_id = str(uuid.UUID(record.record_id)) if record.HasField("record_id") else ""
    return event_id, schema.name, content_type, record.data, metadata.encode(), size


# ------------------------------------------------------------------------- strategies
_IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: u.hex),
    st.just(str(uuid.UUID(int=0))),
    st.text(max_size=40),
)
_SCALARS = st.one_of(
    st.text(max_size=12).map(lambda s: struct_pb2.Value(string_value=s)),
    st.floats(allow_nan=True).map(lambda f: struct_pb2.Value(number_value=f)),
    st.integers(-(2**60), 2**60).map(lambda n: struct_pb2.Value(number_value=n)),
    st.booleans().map(lambda b: struct_pb2.Value(bool_value=b)),
    st.just(struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)),
    st.just(struct_pb2.Value()),  # no kind: a failure
)


def _nested(children: st.SearchStrategy) -> st.SearchStrategy:
    def as_list(values: list) -> struct_pb2.Value:
        return struct_pb2.Value(list_value=struct_pb2.ListValue(values=values))

    def as_struct(fields: dict) -> struct_pb2.Value:
        return struct_pb2.Value(struct_value=struct_pb2.Struct(fields=fields))

    return st.one_of(
        st.lists(children, max_size=3).map(as_list),
        st.dictionaries(st.text(max_size=6), children, max_size=3).map(as_struct),
    )


_VALUES = st.recursive(_SCALARS, _nested, max_leaves=6)
_KEYS = st.one_of(
    st.sampled_from(
        ["$originalPosition", "$correlationId", "a<b>&", "", "$schema.name", "$schema.format"]
    ),
    st.text(max_size=10),
)


_VALID_IDS = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
)
_VALID_VALUES = st.recursive(
    st.one_of(
        st.text(max_size=12).map(lambda s: struct_pb2.Value(string_value=s)),
        st.floats().map(lambda f: struct_pb2.Value(number_value=f)),
        st.booleans().map(lambda b: struct_pb2.Value(bool_value=b)),
    ),
    _nested,
    max_leaves=6,
)


@st.composite
def _records(draw: st.DrawFn, valid: bool = False) -> streams_pb2.AppendRecord:
    """Any record; `valid`: mostly records that pass validation, so they are prepared."""
    record = streams_pb2.AppendRecord(data=draw(st.binary(max_size=64)))
    ids = _VALID_IDS if valid else _IDS
    if draw(st.booleans()):
        record.record_id = draw(ids)
    keys = (
        st.one_of(st.sampled_from(["$schema.name", "$schema.format"]), st.text(min_size=1))
        if valid
        else _KEYS
    )
    for key, value in draw(
        st.dictionaries(keys, _VALID_VALUES if valid else _VALUES, max_size=5)
    ).items():
        record.properties[key].CopyFrom(value)
    record.schema.format = draw(st.integers(1, 4) if valid else st.integers(0, 5))
    names = ["OrderPlaced", "Ünï.Typ", "$>", "a:b-c_d.e"]
    record.schema.name = draw(
        st.sampled_from(names) if valid else st.one_of(st.sampled_from([*names, ""]), st.text())
    )
    if draw(st.booleans()):
        record.schema.id = draw(ids)
    if draw(st.booleans()):
        record.stream = draw(st.sampled_from(["s-1"] if valid else ["s-1", "", "$$"]))
    return record


_RULES = st.builds(Rules, st.booleans(), st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_records(), _records(valid=True)), _RULES)
def test_records_are_validated_and_prepared_as_before(
    record: streams_pb2.AppendRecord, rules: Rules
) -> None:
    failures = record_failures(record, rules)
    assert failures == _old_record_failures(record, rules)
    assert record_failures(record, rules) == failures  # the cached name check, a second time
    if failures:
        return
    prepared = prepare(record)
    event_id, type_, content_type, data, metadata, size = _old_prepare(record)
    event = prepared.event
    if record.HasField("record_id"):
        assert event.event_id == event_id
    else:  # a new id, in the canonical form
        assert str(uuid.UUID(event.event_id)) == event.event_id
    assert (event.type, event.content_type, event.data, event.metadata, prepared.size) == (
        type_,
        content_type,
        data,
        metadata,
        size,
    )


@given(_IDS)
@example("00000000-0000-0000-0000-000000000000")
@example("0" * 32)
@example("12345678-1234-1234-1234-12345678901g")
@example("12345678-1234-1234-1234-1234567890ab\n")
def test_ids_as_before(text: str) -> None:
    assert _is_guid(text) == _old_is_guid(text)
    if _old_is_guid(text) or text.replace("0", "").strip("-{}") == "":
        try:
            expected = str(uuid.UUID(text))
        except ValueError:
            return
        assert _uuid_text(text) == expected


@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_fields_rendered_as_before(fields: dict) -> None:
    assert _format_fields(fields) == _old_format_fields(fields)
    for key in fields:
        assert _json_key(key) == _json_string(key)
