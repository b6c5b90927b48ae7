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

from reservoir.errors import FailedPrecondition, InvalidArgument


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
        """Every file under the mount root, recursively, in any order (pages as needed).

        Files only: directories, S3 directory markers, symlinks out of the root and
        special files are left out. Each path is in `reservoir.paths.normalize` form.
        """
        ...

    async def head(self, path: str) -> ObjectInfo:
        """The file at `path`, or NotFound (also for a directory or the root itself).

        `path` is normalised first: InvalidArgument if it would leave the root.
        """
        ...

    def get_range(self, path: str, start: int, end: int, *, version: str) -> AsyncIterator[bytes]:
        """Bytes [start, end) of `path` in chunks, as they arrive.

        Like a slice: an `end` past the end of the file stops there, and a range that
        starts at or after it yields nothing. InvalidArgument for start < 0 or end < start.
        Fails with FailedPrecondition (`changed_since_sync`) when the file is no longer
        at `version`, so that a changed origin object never mixes old and new bytes.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def changed_since_sync(path: str) -> FailedPrecondition:
    """The error for a file that is no longer the version the metadata recorded."""
    return FailedPrecondition(
        f"{path!r} changed in the under-storage since the last sync; "
        "run `reservoir dataset sync NAME` and read it again"
    )


def check_range(start: int, end: int) -> None:
    """Refuse byte ranges that no file has."""
    if start < 0 or end < start:
        raise InvalidArgument(f"invalid byte range [{start}, {end})")
