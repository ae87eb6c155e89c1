from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.rpc import code_pb2 as _code_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
ERROR_FIELD_NUMBER: _ClassVar[int]
error: _descriptor.FieldDescriptor

class ErrorMetadata(_message.Message):
    __slots__ = ("status_code", "has_details")
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    HAS_DETAILS_FIELD_NUMBER: _ClassVar[int]
    status_code: _code_pb2.Code
    has_details: bool
    def __init__(self, status_code: _Optional[_Union[_code_pb2.Code, str]] = ..., has_details: bool = ...) -> None: ...
