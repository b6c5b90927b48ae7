"""The FUSE glue: pyfuse3's low-level operations, translated to `DatasetTree` and
`OpenFiles` and back. No file-system logic lives here.

Why pyfuse3 (the measurements are in `reservoir.client.fuse`'s note): its
handlers are trio tasks, one per request, started in the order the kernel sent the
requests; each handle's reads take turns on a FIFO `trio.Lock` taken before the
handler's first await, so a handle's reads reach its `ReservoirFile` in file order
(its read-ahead streams only while reads are sequential), while lookups and reads
of other files go on meanwhile. The library calls block (gRPC), so each runs on a
worker thread (`trio.to_thread`).

A handler never lets an exception out (pyfuse3 would end the session on it): a
bug answers EIO and is logged. Every write-type operation answers EROFS; the mount
is also made `ro`, so the kernel refuses most of them before they get here.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from reservoir.client.fuse.handles import OpenFiles
from reservoir.client.fuse.inodes import InodeTable
from reservoir.client.fuse.tree import BLOCK_SIZE_HINT, Attributes, DatasetTree, FsError

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

NAME_MAX = 255  # bytes in one path component, as every Linux file system


def _fuse_error(exc: Exception) -> pyfuse3.FUSEError:
    """What a handler answers for `exc`: its errno, or EIO for the unexpected."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc
    if isinstance(exc, FsError):
        return pyfuse3.FUSEError(exc.errno)
    log.error("unexpected error, answered EIO", exc_info=exc)
    return pyfuse3.FUSEError(errno.EIO)


async def _call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args)` on a worker thread (the library blocks), its errors as FUSE's."""
    try:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    except Exception as exc:
        raise _fuse_error(exc) from None


def _answers(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """A handler whose errors (an unknown inode or handle, a bug) reach the kernel
    as FUSE errors, not pyfuse3's main loop."""

    @functools.wraps(fn)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            raise _fuse_error(exc) from None

    return handler


class _Reply:
    """Per open file: the turn its reads take, and the buffer they are read into.

    pyfuse3 replies from the buffer a handler returns as soon as it returns, before
    any other task runs, so one buffer per handle is reused for every read of it.
    """

    def __init__(self) -> None:
        self.turn = trio.Lock()  # FIFO: reads are served in the order they came
        self.buffer = bytearray()


class ReadOnlyOperations(pyfuse3.Operations):
    """A dataset as a read-only file system; see the module's note."""

    def __init__(self, tree: DatasetTree, files: OpenFiles, *, timeout: float) -> None:
        super().__init__()
        self.tree = tree
        self.files = files
        self.timeout = timeout  # entry and attribute timeouts given to the kernel
        self.inodes = InodeTable()
        self.uid, self.gid = os.getuid(), os.getgid()
        self._replies: dict[int, _Reply] = {}

    def _entry(self, attrs: Attributes) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = pyfuse3.InodeT(attrs.ino)
        entry.st_mode = pyfuse3.ModeT(attrs.mode)
        entry.st_nlink = attrs.nlink
        entry.st_uid, entry.st_gid = self.uid, self.gid
        entry.st_size = attrs.size
        entry.st_blocks = attrs.blocks
        entry.st_blksize = BLOCK_SIZE_HINT
        entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = attrs.mtime_ns
        entry.entry_timeout = entry.attr_timeout = self.timeout
        return entry

    def _child(self, parent: int, name: bytes) -> str:
        if len(name) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        base = self.inodes.path(parent)
        child = os.fsdecode(name)
        return f"{base}/{child}" if base else child

    # -- reading the tree -------------------------------------------------------------

    @_answers
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        attrs = await _call(self.tree.getattr, self._child(parent_inode, name))
        self.inodes.remember(attrs.ino, attrs.path)
        return self._entry(attrs)

    @_answers
    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @_answers
    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        return self._entry(await _call(self.tree.getattr, self.inodes.path(inode)))

    @_answers
    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        return pyfuse3.FileHandleT(await _call(self.files.opendir, self.inodes.path(inode)))

    @_answers
    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        directory, entries = self.files.entries(fh)
        # Entry i + 2 is entries[i]: "." and ".." come first, and the kernel neither
        # follows nor counts them. A large directory takes many calls, each from
        # start_id on, so only the entries from there are made.
        for index in range(start_id, len(entries) + 2):
            name, attrs = ((b".", b"..")[index], directory) if index < 2 else entries[index - 2]
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._entry(attrs), index + 1):
                break  # the kernel's buffer is full: it asks again from this index
            if index >= 2:  # readdirplus counts a lookup of the entry
                self.inodes.remember(attrs.ino, attrs.path)

    @_answers
    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self.files.releasedir(fh)

    @_answers
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        size, files = await _call(self.tree.usage)
        stat = pyfuse3.StatvfsData()
        stat.f_bsize = stat.f_frsize = BLOCK_SIZE_HINT
        stat.f_blocks = -(-size // BLOCK_SIZE_HINT)
        stat.f_bfree = stat.f_bavail = 0  # read-only: no room for anything
        stat.f_files = files
        stat.f_ffree = stat.f_favail = 0
        stat.f_namemax = NAME_MAX
        return stat

    # -- reading files ------------------------------------------------------------------

    @_answers
    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        path = self.inodes.path(inode)
        number, handle = await _call(self.files.open, path, flags)
        self._replies[number] = _Reply()
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(number), keep_cache=handle.keep_cache)

    # pyfuse3 annotates read() as returning bytes, but takes any buffer (it reads the
    # answer through the buffer protocol): a view of the handle's buffer, not a copy.
    @_answers
    async def read(  # type: ignore[override]
        self, fh: pyfuse3.FileHandleT, off: int, size: int
    ) -> memoryview:
        handle, reply = self.files.get(fh), self._replies[fh]
        async with reply.turn:  # taken before the first await: the kernel's order
            if len(reply.buffer) < size:
                reply.buffer = bytearray(size)
            view = memoryview(reply.buffer)[:size]
            done = await _call(handle.readinto, off, view)
            return view[:done]

    @_answers
    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        self._replies.pop(fh, None)
        await _call(self.files.release, fh)

    async def access(self, inode: pyfuse3.InodeT, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        return not mode & os.W_OK

    # -- writing: never ---------------------------------------------------------------------

    async def setattr(self, *args: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mknod(self, *args: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, *args: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def symlink(self, *args: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(self, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def link(self, *args: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def create(self, *args: object) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def write(self, *args: object) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def setxattr(self, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def removexattr(self, *args: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)
