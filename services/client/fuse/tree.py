"""What a mount shows: paths of one dataset as attributes, not tied to a FUSE library.

Design
------
A mount is a read-only view of one dataset, or of a directory inside it (`root`).
The FUSE glue hands this module paths relative to the mount ("" is its root) and
gets back `Attributes` or an `FsError` carrying an errno; it never sees a
`reservoir.errors` type, and this module never sees a FUSE type.

- Attributes come from directory listings: looking up `a/b` lists `a` once and
  keeps the listing for `ttl` seconds, so the `lookup` of every entry of a
  directory (what `ls -l`, `find` and `tar` do) costs one master call, not one per
  file. Listings are kept for at most `MAX_LISTINGS` directories, least recently
  used first out, so a walk over millions of files holds a bounded amount.
- Inode numbers are a hash of the dataset path: the same file has the same st_ino
  in every mount on every node, across restarts, with no table to keep.
- Directories carry no mtime in a dataset; they show the dataset's last sync, the
  moment the tree they list was taken.

Errors of the library map to errno in `errno_of`, the one place that decides.
"""

from __future__ import annotations

import errno
import hashlib
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from reservoir import paths
from reservoir.client.client import Client
from reservoir.client.types import FileStat
from reservoir.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ReservoirError,
)

# How long a listing answers lookups before the master is asked again. The kernel
# caches entries and attributes for as long (the glue passes it as entry and attr
# timeouts): a file version never changes, only a `dataset sync` changes the tree,
# and a minute is how long a mount may lag one.
TTL_SECONDS = 60.0
# Directories whose listings are kept: a few MiB of FileStats at most, enough for
# a training job's walk over a deep tree to hit.
MAX_LISTINGS = 4096
# The I/O size the mount advertises (st_blksize): `cp`, Python's open() and most
# readers size their buffers by it, and fewer, larger reads cost less per byte.
BLOCK_SIZE_HINT = 1024 * 1024
ROOT_INODE = 1  # FUSE's fixed inode number of the mount's root


class FsError(Exception):
    """A file-system error: what the FUSE glue answers with `errno`."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or errno.errorcode.get(code, str(code)))
        self.errno = code


def errno_of(exc: ReservoirError) -> int:
    """The errno a mount answers for a library error.

    ESTALE for FailedPrecondition: the origin object changed since the dataset was
    synced, the file handle names a version that is gone. Anything else the library
    raises (Unavailable: no worker or master answers) is an I/O error.
    """
    if isinstance(exc, NotFound):
        return errno.ENOENT
    if isinstance(exc, FailedPrecondition):
        return errno.ESTALE
    if isinstance(exc, InvalidArgument):
        return errno.EINVAL
    return errno.EIO


def inode_of(path: str) -> int:
    """A stable inode number for a dataset path: 63 bits of its hash, never the root's."""
    if not path:
        return ROOT_INODE
    digest = hashlib.blake2b(path.encode(), digest_size=8).digest()
    return max(int.from_bytes(digest, "big") >> 1, ROOT_INODE + 1)


@dataclass(frozen=True)
class Attributes:
    """A file or directory as stat(2) shows it."""

    path: str  # relative to the mount's root; "" is the root
    ino: int
    is_dir: bool
    size: int
    mtime_ns: int
    version: str = ""

    @property
    def mode(self) -> int:
        """Read-only for everyone: the view never changes through the mount."""
        return (stat.S_IFDIR | 0o555) if self.is_dir else (stat.S_IFREG | 0o444)

    @property
    def nlink(self) -> int:
        """1 for directories as well: "not counted" (as btrfs does), which keeps
        find(1) from skipping subdirectories on a count it cannot trust."""
        return 1

    @property
    def blocks(self) -> int:
        """512-byte blocks, so that du(1) shows the size."""
        return (self.size + 511) // 512


class DatasetTree:
    """Paths of `dataset` (under `root`) as `Attributes`, with listings cached.

    Thread-safe: the FUSE glue may call it from several threads at once.
    """

    def __init__(
        self,
        client: Client,
        dataset: str,
        root: str = "",
        *,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.dataset = dataset
        self.root = paths.normalize(root)
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._listings: OrderedDict[str, tuple[float, dict[str, FileStat]]] = OrderedDict()
        self._dir_mtime_ns = 0
        self._usage: tuple[float, int, int] | None = None  # (when, bytes, files)

    def check(self) -> None:
        """Raise the library's error if the dataset, or its `root`, cannot be mounted.
        Called before mounting, so a typo mounts nothing."""
        info = self.client.dataset(self.dataset)
        self._dir_mtime_ns = max(info.synced_ms, info.created_ms) * 1_000_000
        if self.root:
            entry = self.client.stat(self.dataset, self.root)
            if not entry.is_dir:
                raise InvalidArgument(f"{self.dataset}/{self.root} is a file, not a directory")

    def dataset_path(self, path: str) -> str:
        """The dataset path of mount path `path`."""
        path = path.strip("/")
        return f"{self.root}/{path}" if self.root and path else self.root or path

    # -- the questions the glue asks -----------------------------------------------

    def getattr(self, path: str) -> Attributes:
        path = path.strip("/")
        if not path:
            return self._directory("")
        parent, _, name = path.rpartition("/")
        entry = self._listing(parent).get(name)
        if entry is None:
            raise FsError(errno.ENOENT)
        return self._attributes(path, entry)

    def readdir(self, path: str) -> list[tuple[str, Attributes]]:
        """The entries of directory `path`, by name, without "." and "..". Always a
        fresh listing: `ls` of a directory shows the tree as the master has it now."""
        path = path.strip("/")
        listing = self._listing(path, fresh=True)
        return [
            (name, self._attributes(f"{path}/{name}" if path else name, entry))
            for name, entry in listing.items()
        ]

    def usage(self) -> tuple[int, int]:
        """(bytes, files) of the whole dataset, for statfs(2): what `df` shows and
        what a volume's stats report. Kept for `ttl` like a listing."""
        now = self._clock()
        if self._usage is None or now - self._usage[0] >= self.ttl:
            try:
                info = self.client.dataset(self.dataset)
            except ReservoirError as exc:
                raise FsError(errno_of(exc), str(exc)) from None
            self._usage = (now, info.total_bytes, info.file_count)
        return self._usage[1], self._usage[2]

    def forget(self) -> None:
        """Drop every listing kept (after a sync, or in tests)."""
        with self._lock:
            self._listings.clear()

    # -- inside ------------------------------------------------------------------------

    def _listing(self, path: str, *, fresh: bool = False) -> dict[str, FileStat]:
        """Directory `path`'s entries by name; FsError if it is no directory."""
        now = self._clock()
        with self._lock:
            kept = self._listings.get(path)
            if kept and not fresh and now - kept[0] < self.ttl:
                self._listings.move_to_end(path)
                return kept[1]
        where = self.dataset_path(path)
        try:
            entries = self.client.ls(self.dataset, where)
        except ReservoirError as exc:
            raise FsError(errno_of(exc), str(exc)) from None
        if where and [(e.path, e.is_dir) for e in entries] == [(where, False)]:
            raise FsError(errno.ENOTDIR)  # `ls` of a file answers the file itself
        listing = {e.name: e for e in entries}
        with self._lock:
            self._listings[path] = (now, listing)
            self._listings.move_to_end(path)
            while len(self._listings) > MAX_LISTINGS:
                self._listings.popitem(last=False)
        return listing

    def _attributes(self, path: str, entry: FileStat) -> Attributes:
        if entry.is_dir:
            return self._directory(path)
        return Attributes(
            path=path,
            ino=inode_of(self.dataset_path(path)),
            is_dir=False,
            size=entry.size,
            mtime_ns=entry.mtime_ms * 1_000_000,
            version=entry.version,
        )

    def _directory(self, path: str) -> Attributes:
        ino = ROOT_INODE if not path else inode_of(self.dataset_path(path))
        return Attributes(path, ino, is_dir=True, size=0, mtime_ns=self._dir_mtime_ns)
