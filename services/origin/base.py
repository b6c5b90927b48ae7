"""The seam to under-storage ("the origin"): where a dataset's bytes really live.

Reservoir only ever reads from an origin. Every method is idempotent and safe to
retry; each implementation translates its own failures into `reservoir.errors`
(NotFound, FailedPrecondition, Unavailable naming the endpoint, ...) at this
boundary, and bounds every call in time so that no caller hangs on a dead origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """A file of the origin, with `path` relative to the dataset's mount root."""

    path: str
    size: int
    # What identifies this content: the ETag on S3, mtime and size on a local disk.
    version: str
    mtime_ms: int


class Origin(Protocol):
    """Read-only access to one dataset's mount (a bucket prefix or a directory)."""

    @property
    def uri(self) -> str:
        """The mount URI, for messages."""
        ...

    def list(self) -> AsyncIterator[ObjectInfo]:
        """Every file under the mount root, recursively, in any order (pages as needed)."""
        ...

    async def head(self, path: str) -> ObjectInfo:
        """The file at `path`, or NotFound."""
        ...

    def get_range(self, path: str, start: int, end: int, *, version: str) -> AsyncIterator[bytes]:
        """Bytes [start, end) of `path` in chunks, as they arrive.

        Fails with FailedPrecondition when the file is no longer at `version`, so that
        a changed origin object never mixes old and new bytes.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
