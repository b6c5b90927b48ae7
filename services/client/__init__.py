"""The client side of Reservoir: the library, fsspec, and (in submodules) the FUSE view
and the CSI node plugin built on it. The command line is `reservoir.cli`."""

from reservoir.client.client import Client
from reservoir.client.reader import ReaderConfig, ReservoirFile
from reservoir.client.types import Dataset, FileStat, SyncResult, Tier, Worker
from reservoir.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ReservoirError,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "Client",
    "Dataset",
    "FailedPrecondition",
    "FileStat",
    "InvalidArgument",
    "NotFound",
    "ReaderConfig",
    "ReservoirError",
    "ReservoirFile",
    "SyncResult",
    "Tier",
    "Unavailable",
    "Worker",
]
