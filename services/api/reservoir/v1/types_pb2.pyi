from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileInfo(_message.Message):
    __slots__ = ("path", "size", "version", "mtime_unix_ms")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MTIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    version: str
    mtime_unix_ms: int
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., version: _Optional[str] = ..., mtime_unix_ms: _Optional[int] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("path", "is_dir", "file")
    PATH_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    path: str
    is_dir: bool
    file: FileInfo
    def __init__(self, path: _Optional[str] = ..., is_dir: _Optional[bool] = ..., file: _Optional[_Union[FileInfo, _Mapping]] = ...) -> None: ...

class BlockKey(_message.Message):
    __slots__ = ("dataset", "path", "version", "index")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    path: str
    version: str
    index: int
    def __init__(self, dataset: _Optional[str] = ..., path: _Optional[str] = ..., version: _Optional[str] = ..., index: _Optional[int] = ...) -> None: ...

class TierUsage(_message.Message):
    __slots__ = ("name", "capacity_bytes", "used_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    capacity_bytes: int
    used_bytes: int
    def __init__(self, name: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...
