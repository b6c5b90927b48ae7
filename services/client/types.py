"""What the client library hands back: plain frozen dataclasses, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field

from reservoir.v1 import master_pb2, types_pb2

_PHASES = {
    master_pb2.DATASET_PHASE_PENDING: "Pending",
    master_pb2.DATASET_PHASE_READY: "Ready",
    master_pb2.DATASET_PHASE_FAILED: "Failed",
    master_pb2.DATASET_PHASE_DELETING: "Deleting",
}


@dataclass(frozen=True)
class FileStat:
    """A file or directory of a dataset. Directories have size 0 and no version."""

    path: str
    is_dir: bool
    size: int = 0
    version: str = ""
    mtime_ms: int = 0

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Dataset:
    name: str
    mount: str
    phase: str
    block_size: int
    file_count: int
    total_bytes: int
    cached_bytes: int
    origin_bytes_read: int
    created_ms: int
    synced_ms: int
    options: dict[str, str] = field(default_factory=dict)
    message: str = ""

    @property
    def cached_percent(self) -> float:
        return 100.0 * self.cached_bytes / self.total_bytes if self.total_bytes else 100.0


@dataclass(frozen=True)
class SyncResult:
    dataset: Dataset
    added: int
    changed: int
    removed: int


@dataclass(frozen=True)
class Tier:
    name: str
    capacity_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class Worker:
    worker_id: str
    address: str
    tiers: list[Tier]
    registered_ms: int


@dataclass(frozen=True)
class LoadJob:
    """A preload: its state is "Running", "Succeeded" or "Failed"."""

    id: str
    dataset: str
    paths: list[str]
    state: str
    total_blocks: int
    loaded_blocks: int
    total_bytes: int
    loaded_bytes: int
    started_ms: int
    finished_ms: int
    message: str = ""

    @property
    def done(self) -> bool:
        return self.state != "Running"


_LOAD_STATES = {
    master_pb2.LOAD_STATE_RUNNING: "Running",
    master_pb2.LOAD_STATE_SUCCEEDED: "Succeeded",
    master_pb2.LOAD_STATE_FAILED: "Failed",
}


def load_job(message: master_pb2.LoadJob) -> LoadJob:
    return LoadJob(
        id=message.id,
        dataset=message.dataset,
        paths=list(message.paths),
        state=_LOAD_STATES.get(message.state, "Unknown"),
        total_blocks=message.total_blocks,
        loaded_blocks=message.loaded_blocks,
        total_bytes=message.total_bytes,
        loaded_bytes=message.loaded_bytes,
        started_ms=message.started_unix_ms,
        finished_ms=message.finished_unix_ms,
        message=message.message,
    )


def file_stat(entry: types_pb2.DirEntry) -> FileStat:
    if entry.is_dir:
        return FileStat(path=entry.path, is_dir=True)
    info = entry.file
    return FileStat(
        path=info.path,
        is_dir=False,
        size=info.size,
        version=info.version,
        mtime_ms=info.mtime_unix_ms,
    )


def dataset(message: master_pb2.Dataset) -> Dataset:
    return Dataset(
        name=message.name,
        mount=message.mount_uri,
        phase=_PHASES.get(message.phase, "Unknown"),
        block_size=message.block_size,
        file_count=message.file_count,
        total_bytes=message.total_bytes,
        cached_bytes=message.cached_bytes,
        origin_bytes_read=message.origin_bytes_read,
        created_ms=message.created_unix_ms,
        synced_ms=message.synced_unix_ms,
        options=dict(message.options),
        message=message.message,
    )


def worker(message: master_pb2.WorkerInfo) -> Worker:
    return Worker(
        worker_id=message.worker_id,
        address=message.address,
        tiers=[Tier(t.name, t.capacity_bytes, t.used_bytes) for t in message.tiers],
        registered_ms=message.registered_unix_ms,
    )
