from reservoir.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReadBlockRequest(_message.Message):
    __slots__ = ("block", "offset", "length", "cached_only")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CACHED_ONLY_FIELD_NUMBER: _ClassVar[int]
    block: _types_pb2.BlockKey
    offset: int
    length: int
    cached_only: bool
    def __init__(self, block: _Optional[_Union[_types_pb2.BlockKey, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., cached_only: _Optional[bool] = ...) -> None: ...

class ReadBlockResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CacheBlockRequest(_message.Message):
    __slots__ = ("block",)
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    block: _types_pb2.BlockKey
    def __init__(self, block: _Optional[_Union[_types_pb2.BlockKey, _Mapping]] = ...) -> None: ...

class CacheBlockResponse(_message.Message):
    __slots__ = ("was_cached", "length")
    WAS_CACHED_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    was_cached: bool
    length: int
    def __init__(self, was_cached: _Optional[bool] = ..., length: _Optional[int] = ...) -> None: ...
