"""`ReservoirFile`, the file object callers hold: opening (one GetBlockLocations),
and the io interface over the spans `streams.py` yields, each chunk copied once into
what the caller gets."""

from __future__ import annotations

import io
import operator
import os
import re
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import grpc

from reservoir import paths
from reservoir.client.reader.config import ReaderConfig
from reservoir.client.reader.fetch import _files, _locations
from reservoir.client.reader.pieces import _Piece
from reservoir.client.reader.streams import _Streaming
from reservoir.errors import InvalidArgument, ReservoirError
from reservoir.rpc.channels import WorkerChannels, shared_channels
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import worker_pb2

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_NEWLINE = re.compile(b"\n")


class ReservoirFile(_Streaming, io.BufferedIOBase):
    """A file of a dataset, read-only, seekable; see the package's design note.

    Not a copy: bytes come from the workers as they are read. Errors are
    `reservoir.errors`; a failed read leaves the position where it was. Reads from
    several threads are serialised; for parallel reads open the file once per thread.
    """

    def __init__(
        self,
        master: MasterClient,
        dataset: str,
        path: str,
        *,
        config: ReaderConfig | None = None,
        channels: WorkerChannels | None = None,
    ) -> None:
        super().__init__()
        self._lock = threading.Lock()  # first: close() needs it even if opening fails
        # Between the reader and the prefetch thread: the pieces' chunks and states,
        # and the flags below. `_pieces` changes only under `_lock` while `_reading`
        # or `_closing` is set; the prefetch thread looks at it only while neither is.
        self._cv = threading.Condition(threading.Lock())
        self._pieces: OrderedDict[int, _Piece] = OrderedDict()  # by start, LRU order
        self._hinted: set[int] = set()  # blocks whose workers were asked to cache them
        # Those CacheBlock calls, while under way.
        self._hints: list[grpc.Future[worker_pb2.CacheBlockResponse]] = []
        self._reading = False
        self._closing = False
        self._paused = False  # a fork is under way
        self._prefetcher: threading.Thread | None = None
        self._read_ended = 0.0  # when the last read ended (time.monotonic)
        self._pid = os.getpid()
        self.dataset = dataset
        self.path = paths.normalize(path)
        self._master = master
        self._config = config or ReaderConfig()
        self._channels = channels or shared_channels()
        answer = self._locate()
        self.size: int = answer.file.size
        self.version: str = answer.file.version
        self.mtime_ms: int = answer.file.mtime_unix_ms
        self.block_size: int = answer.block_size
        if self.size and self.block_size <= 0:
            raise ReservoirError(f"the master gave no block size for {self.name}")
        self._locations = _locations(answer)
        self._generation = 0  # bumped whenever the locations are asked again
        self._refresh_lock = threading.Lock()
        self._suspects: dict[str, float] = {}  # worker -> until when it is tried last
        self._pos = 0
        self._expected = 0  # where a sequential read would start
        self._ahead = 1  # segments of read-ahead; 0 while reads are random
        self._limit = 0  # the position plus the read-ahead: where prefetching stops
        self._frontier = 0  # where the last piece started ends
        _files.add(self)

    @property
    def mode(self) -> str:
        return "rb"

    def __repr__(self) -> str:
        return f"<ReservoirFile {self.name} size={self.size} version={self.version!r}>"

    # -- the file interface --------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        offset = operator.index(offset)
        with self._lock:
            self._check_open()
            if whence == io.SEEK_SET:
                pos = offset
            elif whence == io.SEEK_CUR:
                pos = self._pos + offset
            elif whence == io.SEEK_END:
                pos = self.size + offset
            else:
                raise InvalidArgument(f"seek whence must be 0, 1 or 2, not {whence!r}")
            if pos < 0:
                raise InvalidArgument(f"cannot seek to {pos}: a position is never negative")
            self._pos = pos
            return pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all the rest if negative); b"" at or past the end."""
        with self._lock:
            self._check_open()
            start = self._pos
            try:
                # Each chunk is copied once, as it arrives, into a BytesIO whose
                # getvalue() hands its buffer over without a copy.
                out = io.BytesIO()
                for chunk, a, b in self._spans(self._end(size)):
                    out.write(memoryview(chunk)[a:b])
                return out.getvalue()
            except BaseException:
                self._pos = start
                raise

    def read1(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes; if negative, up to the end of the current segment."""
        if size is None or size < 0:
            size = max(0, self._segment_end(self._pos) - self._pos) if self._pos < self.size else 0
        return self.read(size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        with self._lock:
            self._check_open()
            start = self._pos
            with memoryview(buffer) as view, view.cast("B") as out:
                n = 0
                try:
                    for chunk, a, b in self._spans(self._end(len(out))):
                        out[n : n + b - a] = memoryview(chunk)[a:b]
                        n += b - a
                except BaseException:
                    self._pos = start
                    raise
                return n

    def readinto1(self, buffer: WriteableBuffer) -> int:
        return self.readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        """One line with its b"\\n" (at most `size` bytes), without a byte-by-byte scan."""
        with self._lock:
            self._check_open()
            start = self._pos
            parts: list[memoryview] = []
            try:
                for chunk, a, b in self._spans(self._end(size)):
                    found = _NEWLINE.search(chunk, a, b)  # chunks may be memoryviews
                    if found:  # the generator stops here: set the position
                        parts.append(memoryview(chunk)[a : found.end()])
                        self._pos = self._expected = start + sum(len(p) for p in parts)
                        break
                    parts.append(memoryview(chunk)[a:b])
            except BaseException:
                self._pos = start
                raise
            return b"".join(parts)

    def close(self) -> None:
        """Stop every fetch under way and release the pieces held (after a read under
        way in another thread, as io's buffered files do)."""
        with self._lock:
            if not self.closed:
                self._reset()
        super().close()

    def __enter__(self) -> ReservoirFile:
        self._check_open()
        return self

    # -- what the interface asks of the position -----------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # what io's files raise

    def _end(self, size: int | None) -> int:
        if size is None or size < 0:
            return self.size
        return min(self.size, self._pos + size)

    def _segment_end(self, pos: int) -> int:
        block_start = pos // self.block_size * self.block_size
        block_end = min(block_start + self.block_size, self.size)
        segment = self._config.segment_size
        return min(block_end, block_start + ((pos - block_start) // segment + 1) * segment)
