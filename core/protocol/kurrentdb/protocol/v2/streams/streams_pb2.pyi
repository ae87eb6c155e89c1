from google.protobuf import struct_pb2 as _struct_pb2
from core.protocol.kurrentdb.protocol.v2.streams import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExpectedRevisionConstants(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPECTED_REVISION_CONSTANTS_SINGLE_EVENT: _ClassVar[ExpectedRevisionConstants]
    EXPECTED_REVISION_CONSTANTS_NO_STREAM: _ClassVar[ExpectedRevisionConstants]
    EXPECTED_REVISION_CONSTANTS_ANY: _ClassVar[ExpectedRevisionConstants]
    EXPECTED_REVISION_CONSTANTS_EXISTS: _ClassVar[ExpectedRevisionConstants]
EXPECTED_REVISION_CONSTANTS_SINGLE_EVENT: ExpectedRevisionConstants
EXPECTED_REVISION_CONSTANTS_NO_STREAM: ExpectedRevisionConstants
EXPECTED_REVISION_CONSTANTS_ANY: ExpectedRevisionConstants
EXPECTED_REVISION_CONSTANTS_EXISTS: ExpectedRevisionConstants

class AppendRequest(_message.Message):
    __slots__ = ("stream", "records", "expected_revision")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    stream: str
    records: _containers.RepeatedCompositeFieldContainer[AppendRecord]
    expected_revision: int
    def __init__(self, stream: _Optional[str] = ..., records: _Optional[_Iterable[_Union[AppendRecord, _Mapping]]] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("stream", "stream_revision", "position")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_REVISION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    stream: str
    stream_revision: int
    position: int
    def __init__(self, stream: _Optional[str] = ..., stream_revision: _Optional[int] = ..., position: _Optional[int] = ...) -> None: ...

class AppendSessionResponse(_message.Message):
    __slots__ = ("output", "position")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    output: _containers.RepeatedCompositeFieldContainer[AppendResponse]
    position: int
    def __init__(self, output: _Optional[_Iterable[_Union[AppendResponse, _Mapping]]] = ..., position: _Optional[int] = ...) -> None: ...

class AppendRecord(_message.Message):
    __slots__ = ("record_id", "properties", "schema", "data", "stream")
    class PropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    properties: _containers.MessageMap[str, _struct_pb2.Value]
    schema: _shared_pb2.SchemaInfo
    data: bytes
    stream: str
    def __init__(self, record_id: _Optional[str] = ..., properties: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., schema: _Optional[_Union[_shared_pb2.SchemaInfo, _Mapping]] = ..., data: _Optional[bytes] = ..., stream: _Optional[str] = ...) -> None: ...

class AppendRecordsRequest(_message.Message):
    __slots__ = ("records", "checks")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AppendRecord]
    checks: _containers.RepeatedCompositeFieldContainer[ConsistencyCheck]
    def __init__(self, records: _Optional[_Iterable[_Union[AppendRecord, _Mapping]]] = ..., checks: _Optional[_Iterable[_Union[ConsistencyCheck, _Mapping]]] = ...) -> None: ...

class AppendRecordsResponse(_message.Message):
    __slots__ = ("revisions", "position")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[_shared_pb2.StreamRevision]
    position: int
    def __init__(self, revisions: _Optional[_Iterable[_Union[_shared_pb2.StreamRevision, _Mapping]]] = ..., position: _Optional[int] = ...) -> None: ...

class ConsistencyCheck(_message.Message):
    __slots__ = ("stream_state",)
    class StreamStateCheck(_message.Message):
        __slots__ = ("stream", "expected_state")
        STREAM_FIELD_NUMBER: _ClassVar[int]
        EXPECTED_STATE_FIELD_NUMBER: _ClassVar[int]
        stream: str
        expected_state: int
        def __init__(self, stream: _Optional[str] = ..., expected_state: _Optional[int] = ...) -> None: ...
    STREAM_STATE_FIELD_NUMBER: _ClassVar[int]
    stream_state: ConsistencyCheck.StreamStateCheck
    def __init__(self, stream_state: _Optional[_Union[ConsistencyCheck.StreamStateCheck, _Mapping]] = ...) -> None: ...
