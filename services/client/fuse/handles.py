"""Open files and directories of a mount: FUSE handle numbers to what they hold.

Design
------
Each open(2) through the mount gets its own `ReservoirFile`, so each reader keeps
its own read-ahead: the kernel's reads of one handle arrive in file order and the
file streams its blocks ahead of them. A handle's reads are serialised by its lock
(a `ReservoirFile` serves one reader at a time); reads of different handles run
in parallel.

The page cache: a file version never changes, so the kernel may keep a file's
pages across opens (FOPEN_KEEP_CACHE) and serve repeated reads without asking us.
It may do so only while the version is the one whose pages it holds: `open` says
"keep" when this mount opened the same version of the path before, and "drop"
otherwise, so the first open of a new version (after a `dataset sync`) throws the
old pages away.

An open directory holds the listing taken at opendir(2), so that a directory read
in several calls (a large one) is one consistent snapshot.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from reservoir.client.client import Client
from reservoir.client.fuse.tree import Attributes, DatasetTree, FsError, errno_of
from reservoir.client.reader import ReservoirFile
from reservoir.errors import ReservoirError

# Paths whose last opened version is remembered for the page cache decision. A path
# forgotten is opened with "drop", which only costs the kernel's pages of it.
MAX_VERSIONS = 65536


@dataclass
class Handle:
    """One open file: its `ReservoirFile` and the lock its reads take turns on."""

    file: ReservoirFile
    keep_cache: bool
    lock: threading.Lock = field(default_factory=threading.Lock)

    def readinto(self, offset: int, buffer: memoryview) -> int:
        """Fill `buffer` from `offset` (less at the end of the file): pread(2), copying
        each byte once, from the worker's message into the buffer FUSE replies from."""
        with self.lock:
            try:
                if self.file.tell() != offset:
                    self.file.seek(offset)
                done = 0
                while done < len(buffer) and (n := self.file.readinto(buffer[done:])):
                    done += n
                return done
            except ReservoirError as exc:
                raise FsError(errno_of(exc), str(exc)) from None


class OpenFiles:
    """The handle table of one mount. Thread-safe."""

    def __init__(self, client: Client, tree: DatasetTree) -> None:
        self._client = client
        self._tree = tree
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        self._dirs: dict[int, tuple[Attributes, list[tuple[str, Attributes]]]] = {}
        self._numbers = itertools.count(1)  # 0 means "no handle" to some FUSE APIs
        self._versions: OrderedDict[str, str] = OrderedDict()

    def open(self, path: str, flags: int) -> tuple[int, Handle]:
        """Open `path` (relative to the mount) for reading: a handle number and the handle."""
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_CREAT):
            raise FsError(errno.EROFS)
        where = self._tree.dataset_path(path)
        try:
            file = self._client.open(self._tree.dataset, where)
        except ReservoirError as exc:
            raise FsError(errno_of(exc), str(exc)) from None
        with self._lock:
            keep = self._versions.get(where) == file.version
            self._versions[where] = file.version
            self._versions.move_to_end(where)
            while len(self._versions) > MAX_VERSIONS:
                self._versions.popitem(last=False)
            number = next(self._numbers)
            handle = self._handles[number] = Handle(file, keep)
        return number, handle

    def get(self, number: int) -> Handle:
        try:
            return self._handles[number]
        except KeyError:
            raise FsError(errno.EBADF) from None

    def opendir(self, path: str) -> int:
        """Open directory `path`: a handle number for its listing, taken now."""
        snapshot = (self._tree.getattr(path), self._tree.readdir(path))
        with self._lock:
            number = next(self._numbers)
            self._dirs[number] = snapshot
        return number

    def entries(self, number: int) -> tuple[Attributes, list[tuple[str, Attributes]]]:
        """The directory itself and its entries, as opendir found them."""
        try:
            return self._dirs[number]
        except KeyError:
            raise FsError(errno.EBADF) from None

    def releasedir(self, number: int) -> None:
        with self._lock:
            self._dirs.pop(number, None)

    def release(self, number: int) -> None:
        """Close the handle (after the last close(2) of the open file)."""
        with self._lock:
            handle = self._handles.pop(number, None)
        if handle is not None:
            handle.file.close()

    def close_all(self) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
            self._dirs.clear()
        for handle in handles:
            handle.file.close()

    def __len__(self) -> int:
        return len(self._handles)
