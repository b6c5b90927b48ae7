"""A local directory as under-storage: `file:///absolute/dir`.

Design note
-----------
- Containment. Every path goes through `reservoir.paths.normalize` (no NUL bytes, no
  `..` above the root; a leading "/" means the root), then through `realpath` and a
  check that the result is the root or below it. A symlink is followed only when its
  resolved target stays inside the root; otherwise `list` skips it silently and
  `head`/`get_range` answer NotFound, exactly as for a missing file, so a dataset can
  never be used to probe the rest of the machine. The final open uses O_NOFOLLOW, so a
  symlink swapped in after the check is refused rather than followed.
- Version. A file's version is `"{st_mtime_ns}-{st_size}"`. `get_range` compares it on
  the open descriptor before reading and again after the last chunk, so a file
  rewritten since the last sync fails with FailedPrecondition instead of mixing old and
  new bytes. (A rewrite that keeps both size and mtime is invisible, as for rsync.)
- No blocking on the event loop. The walk is a plain generator over `os.scandir`,
  advanced `LIST_BATCH` entries at a time in a worker thread; reads are `os.pread` of
  `READ_CHUNK` bytes in a worker thread.
- Only regular files are listed: directories are walked (symlinked ones too, once
  each, so a link cycle ends), fifos, sockets and devices are skipped, and so are
  names that are not valid UTF-8 (no wire format could carry them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from reservoir.errors import FailedPrecondition, NotFound
from reservoir.origin.base import ObjectInfo, changed_since_sync, check_range
from reservoir.paths import normalize

log = logging.getLogger(__name__)

LIST_BATCH = 1000  # entries per thread hop: amortises the hop, keeps the loop responsive
READ_CHUNK = 1 << 20  # 1 MiB: large enough for disk throughput, small for streaming
# O_NOFOLLOW: the checked real path must not become a symlink before it is opened.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def _version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}-{st.st_size}"


def _info(path: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        path=path,
        size=st.st_size,
        version=_version(st),
        mtime_ms=st.st_mtime_ns // 1_000_000,
    )


class LocalOrigin:
    """Read-only access to a directory tree of this machine."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def uri(self) -> str:
        return self._root.as_uri()

    # -- listing ------------------------------------------------------------------

    async def list(self) -> AsyncIterator[ObjectInfo]:
        real_root = await asyncio.to_thread(self._real_root)
        walk = self._walk(real_root)
        while batch := await asyncio.to_thread(_take, walk, LIST_BATCH):
            for info in batch:
                yield info

    def _walk(self, real_root: str) -> Iterator[ObjectInfo]:
        """Every regular file below `real_root`, depth first, in a worker thread."""
        root_st = os.stat(real_root)
        # Each directory carries the (device, inode) of its ancestors: a symlink back up
        # the tree ends there, while two links to one directory both list its files.
        stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
            (real_root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
        ]
        while stack:
            directory, prefix, ancestors = stack.pop()
            try:
                with os.scandir(directory) as entries:
                    found = list(entries)
            except OSError as exc:  # unreadable or vanished: list what we can
                log.warning("skipping %s/%s: %s", self.uri, prefix, exc.strerror)
                continue
            for entry in found:
                rel = f"{prefix}{entry.name}"
                if not _utf8(rel):
                    log.warning("skipping a file name that is not UTF-8: %r", rel)
                    continue
                try:
                    if entry.is_symlink():
                        real = os.path.realpath(entry.path)
                        if not _inside(real_root, real):
                            continue
                        st = os.stat(real)
                    else:
                        real = entry.path
                        st = entry.stat(follow_symlinks=False)
                except OSError:  # vanished while we walked, or a dangling link
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield _info(rel, st)
                elif stat.S_ISDIR(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if key not in ancestors:
                        stack.append((real, rel + "/", ancestors | {key}))

    # -- single files -------------------------------------------------------------

    async def head(self, path: str) -> ObjectInfo:
        rel = normalize(path)
        return await asyncio.to_thread(self._head, rel)

    def _head(self, rel: str) -> ObjectInfo:
        real = self._resolve(rel)
        try:
            st = os.stat(real)
        except OSError:
            raise self._not_found(rel) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(rel)
        return _info(rel, st)

    async def get_range(
        self, path: str, start: int, end: int, *, version: str
    ) -> AsyncIterator[bytes]:
        rel = normalize(path)
        check_range(start, end)
        fd, size = await asyncio.to_thread(self._open, rel, version)
        try:
            offset, stop = start, min(end, size)
            while offset < stop:
                chunk = await asyncio.to_thread(
                    os.pread, fd, min(READ_CHUNK, stop - offset), offset
                )
                if not chunk:  # truncated under us: the version check below says so
                    break
                offset += len(chunk)
                yield chunk
            st = await asyncio.to_thread(os.fstat, fd)
            if _version(st) != version:
                raise changed_since_sync(rel)
        finally:
            os.close(fd)  # closing a regular file does not block

    def _open(self, rel: str, version: str) -> tuple[int, int]:
        """Open `rel` for reading and check that it is still at `version`."""
        real = self._resolve(rel)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except OSError:
            raise self._not_found(rel) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._not_found(rel)
            if _version(st) != version:
                raise changed_since_sync(rel)
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own descriptor."""

    # -- containment --------------------------------------------------------------

    def _real_root(self) -> str:
        real = os.path.realpath(self._root)
        if not os.path.isdir(real):
            what = "does not exist" if not os.path.exists(real) else "is not a directory"
            raise FailedPrecondition(f"the dataset's root {self._root} {what}")
        return real

    def _resolve(self, rel: str) -> str:
        """The real path of `rel`, which must be a file inside the root."""
        real_root = self._real_root()
        if not rel:
            raise self._not_found(rel)
        real = os.path.realpath(os.path.join(real_root, rel))
        if not _inside(real_root, real):
            raise self._not_found(rel)
        return real

    def _not_found(self, rel: str) -> NotFound:
        return NotFound(f"no file {rel!r} in {self.uri}")


def _inside(real_root: str, real: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return True


def _take(it: Iterator[ObjectInfo], n: int) -> list[ObjectInfo]:
    batch: list[ObjectInfo] = []
    for item in it:
        batch.append(item)
        if len(batch) == n:
            break
    return batch
