from reservoir.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_PHASE_UNSPECIFIED: _ClassVar[DatasetPhase]
    DATASET_PHASE_PENDING: _ClassVar[DatasetPhase]
    DATASET_PHASE_READY: _ClassVar[DatasetPhase]
    DATASET_PHASE_FAILED: _ClassVar[DatasetPhase]
    DATASET_PHASE_DELETING: _ClassVar[DatasetPhase]

class LoadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOAD_STATE_UNSPECIFIED: _ClassVar[LoadState]
    LOAD_STATE_RUNNING: _ClassVar[LoadState]
    LOAD_STATE_SUCCEEDED: _ClassVar[LoadState]
    LOAD_STATE_FAILED: _ClassVar[LoadState]
DATASET_PHASE_UNSPECIFIED: DatasetPhase
DATASET_PHASE_PENDING: DatasetPhase
DATASET_PHASE_READY: DatasetPhase
DATASET_PHASE_FAILED: DatasetPhase
DATASET_PHASE_DELETING: DatasetPhase
LOAD_STATE_UNSPECIFIED: LoadState
LOAD_STATE_RUNNING: LoadState
LOAD_STATE_SUCCEEDED: LoadState
LOAD_STATE_FAILED: LoadState

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "address", "tiers", "registered_unix_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    tiers: _containers.RepeatedCompositeFieldContainer[_types_pb2.TierUsage]
    registered_unix_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[_types_pb2.TierUsage, _Mapping]]] = ..., registered_unix_ms: _Optional[int] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "address", "tiers")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    tiers: _containers.RepeatedCompositeFieldContainer[_types_pb2.TierUsage]
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[_types_pb2.TierUsage, _Mapping]]] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("lease_id", "lease_ttl_seconds")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    lease_ttl_seconds: int
    def __init__(self, lease_id: _Optional[int] = ..., lease_ttl_seconds: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "lease_id", "tiers")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_id: int
    tiers: _containers.RepeatedCompositeFieldContainer[_types_pb2.TierUsage]
    def __init__(self, worker_id: _Optional[str] = ..., lease_id: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[_types_pb2.TierUsage, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "mount_uri", "options", "block_size", "phase", "file_count", "total_bytes", "cached_bytes", "origin_bytes_read", "created_unix_ms", "synced_unix_ms", "message")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MOUNT_URI_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SYNCED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    mount_uri: str
    options: _containers.ScalarMap[str, str]
    block_size: int
    phase: DatasetPhase
    file_count: int
    total_bytes: int
    cached_bytes: int
    origin_bytes_read: int
    created_unix_ms: int
    synced_unix_ms: int
    message: str
    def __init__(self, name: _Optional[str] = ..., mount_uri: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., block_size: _Optional[int] = ..., phase: _Optional[_Union[DatasetPhase, str]] = ..., file_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., cached_bytes: _Optional[int] = ..., origin_bytes_read: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., synced_unix_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CreateDatasetRequest(_message.Message):
    __slots__ = ("name", "mount_uri", "options", "block_size")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    MOUNT_URI_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    mount_uri: str
    options: _containers.ScalarMap[str, str]
    block_size: int
    def __init__(self, name: _Optional[str] = ..., mount_uri: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., block_size: _Optional[int] = ...) -> None: ...

class CreateDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SyncDatasetResponse(_message.Message):
    __slots__ = ("dataset", "added", "changed", "removed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    added: int
    changed: int
    removed: int
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., added: _Optional[int] = ..., changed: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class UpdateCredentialsRequest(_message.Message):
    __slots__ = ("name", "credentials")
    class CredentialsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    name: str
    credentials: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., credentials: _Optional[_Mapping[str, str]] = ...) -> None: ...

class UpdateCredentialsResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDirectoryRequest(_message.Message):
    __slots__ = ("dataset", "path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    path: str
    def __init__(self, dataset: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ListDirectoryResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_types_pb2.DirEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[_types_pb2.DirEntry, _Mapping]]] = ...) -> None: ...

class StatPathRequest(_message.Message):
    __slots__ = ("dataset", "path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    path: str
    def __init__(self, dataset: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class StatPathResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: _types_pb2.DirEntry
    def __init__(self, entry: _Optional[_Union[_types_pb2.DirEntry, _Mapping]] = ...) -> None: ...

class GetBlockLocationsRequest(_message.Message):
    __slots__ = ("dataset", "path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    path: str
    def __init__(self, dataset: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class BlockLocation(_message.Message):
    __slots__ = ("index", "offset", "length", "holders", "fillers")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    HOLDERS_FIELD_NUMBER: _ClassVar[int]
    FILLERS_FIELD_NUMBER: _ClassVar[int]
    index: int
    offset: int
    length: int
    holders: _containers.RepeatedScalarFieldContainer[str]
    fillers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., holders: _Optional[_Iterable[str]] = ..., fillers: _Optional[_Iterable[str]] = ...) -> None: ...

class GetBlockLocationsResponse(_message.Message):
    __slots__ = ("file", "block_size", "blocks")
    FILE_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    file: _types_pb2.FileInfo
    block_size: int
    blocks: _containers.RepeatedCompositeFieldContainer[BlockLocation]
    def __init__(self, file: _Optional[_Union[_types_pb2.FileInfo, _Mapping]] = ..., block_size: _Optional[int] = ..., blocks: _Optional[_Iterable[_Union[BlockLocation, _Mapping]]] = ...) -> None: ...

class CachedBlock(_message.Message):
    __slots__ = ("key", "length")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    key: _types_pb2.BlockKey
    length: int
    def __init__(self, key: _Optional[_Union[_types_pb2.BlockKey, _Mapping]] = ..., length: _Optional[int] = ...) -> None: ...

class OriginBytes(_message.Message):
    __slots__ = ("dataset", "bytes")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    bytes: int
    def __init__(self, dataset: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class ReportBlocksRequest(_message.Message):
    __slots__ = ("worker_id", "lease_id", "added", "removed", "origin_bytes")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_BYTES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_id: int
    added: _containers.RepeatedCompositeFieldContainer[CachedBlock]
    removed: _containers.RepeatedCompositeFieldContainer[_types_pb2.BlockKey]
    origin_bytes: _containers.RepeatedCompositeFieldContainer[OriginBytes]
    def __init__(self, worker_id: _Optional[str] = ..., lease_id: _Optional[int] = ..., added: _Optional[_Iterable[_Union[CachedBlock, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[_types_pb2.BlockKey, _Mapping]]] = ..., origin_bytes: _Optional[_Iterable[_Union[OriginBytes, _Mapping]]] = ...) -> None: ...

class ReportBlocksResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMountRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class GetMountResponse(_message.Message):
    __slots__ = ("mount_uri", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MOUNT_URI_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    mount_uri: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, mount_uri: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LoadJob(_message.Message):
    __slots__ = ("id", "dataset", "paths", "state", "total_blocks", "loaded_blocks", "total_bytes", "loaded_bytes", "started_unix_ms", "finished_unix_ms", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    LOADED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOADED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    state: LoadState
    total_blocks: int
    loaded_blocks: int
    total_bytes: int
    loaded_bytes: int
    started_unix_ms: int
    finished_unix_ms: int
    message: str
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[LoadState, str]] = ..., total_blocks: _Optional[int] = ..., loaded_blocks: _Optional[int] = ..., total_bytes: _Optional[int] = ..., loaded_bytes: _Optional[int] = ..., started_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class StartLoadRequest(_message.Message):
    __slots__ = ("dataset", "paths", "request_id")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, dataset: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartLoadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LoadJob
    def __init__(self, job: _Optional[_Union[LoadJob, _Mapping]] = ...) -> None: ...

class GetLoadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetLoadResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: LoadJob
    def __init__(self, job: _Optional[_Union[LoadJob, _Mapping]] = ...) -> None: ...
