"""Blocks: the unit Reservoir caches, places and moves.

A file is split into fixed-size blocks (the dataset's block size; the last one may be
short). A block's identity names the file's *version* as well as its path, so a
changed origin object never mixes old and new bytes: its blocks simply have other
names.
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import dataclass
from typing import TypeAlias

from reservoir import paths
from reservoir.errors import InvalidArgument
from reservoir.v1 import types_pb2

# A dataset's block size when its creator names none: large enough that per-block
# overheads vanish next to a 30 GB model, small enough that several workers share one
# large file. The master accepts sizes within [MIN_BLOCK_SIZE, MAX_BLOCK_SIZE].
DEFAULT_BLOCK_SIZE = 64 * 1024 * 1024
MIN_BLOCK_SIZE = 64 * 1024
MAX_BLOCK_SIZE = 4 * 1024 * 1024 * 1024

# A block's bytes: as read from disk, or the buffer its fill wrote them into.
BlockData: TypeAlias = bytes | mmap.mmap


def file_id(path: str, version: str) -> str:
    """A short, key-safe name for one version of one file."""
    return hashlib.sha256(f"{path}\0{version}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class BlockId:
    dataset: str
    path: str
    version: str
    index: int

    @property
    def name(self) -> str:
        """A file-name-safe identity: `<file id>-<index>`."""
        return f"{self.dataset}-{file_id(self.path, self.version)}-{self.index}"

    def to_proto(self) -> types_pb2.BlockKey:
        return types_pb2.BlockKey(
            dataset=self.dataset, path=self.path, version=self.version, index=self.index
        )

    @classmethod
    def from_proto(cls, key: types_pb2.BlockKey) -> BlockId:
        """The block `key` names; InvalidArgument if it names none."""
        paths.check_name(key.dataset)
        if not key.path or paths.normalize(key.path) != key.path:
            raise InvalidArgument(f"block path {key.path!r} is not a normalised file path")
        if not key.version:
            raise InvalidArgument(f"block key for {key.path!r} has no version")
        return cls(key.dataset, key.path, key.version, key.index)

    def __str__(self) -> str:
        return f"{self.dataset}/{self.path}@{self.version}#{self.index}"


def block_count(file_size: int, block_size: int) -> int:
    return -(-file_size // block_size)


def block_span(index: int, block_size: int, file_size: int) -> tuple[int, int]:
    """(offset, length) of block `index` in a file of `file_size` bytes."""
    offset = index * block_size
    return offset, max(0, min(block_size, file_size - offset))
