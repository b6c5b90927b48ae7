"""Reading a file of a dataset: a read-only binary file object over the workers.

Prefetch design
---------------
At open, `ReservoirFile` asks the master once where each block of the file lives
(GetBlockLocations); from then on it reads from the workers directly. It holds parts
of the file as *pieces*: byte ranges fetched by one ReadBlock call each, never
crossing a *segment* (an 8 MiB-aligned range inside a block, so a 64 MiB block is 8
segments). A small thread pool per open file fetches them; they are kept in LRU order.

- Sequential reads (one that starts where the previous one ended; the first read at
  offset 0 counts) keep whole segments in flight ahead of the reader. The read-ahead
  starts at one segment and doubles with each segment consumed, up to `window`: a
  reader that wants only a header does not pull 64 MiB, and a streaming reader soon
  has the next block's worker filling it while the current block streams.
- Random reads fetch only the bytes asked for (at least `random_min`, about what one
  round trip costs), without read-ahead; read-ahead not yet started is dropped.
- A piece the sequential reader has passed is dropped at once; others stay, in LRU
  order, up to `window + 2` pieces. Memory is thus bounded by
  (window + 2 + threads) x segment_size per open file: `threads` for fetches evicted
  while running, which are cancelled.

Failures (`_fetch` is the one function to read for them): a piece goes to the
block's first holder, else its first filler. When a worker fails (unreachable,
deadline, stream broken or ended early, NOT_FOUND...), the bytes of the piece not yet
received are asked of the next candidate: holders, then fillers, skipping those that
failed. Once all have failed, the master is asked again for the locations and each
candidate gets one more try; then Unavailable names the workers tried.
FAILED_PRECONDITION (the origin object changed since the last sync) is raised at once.
A worker that failed is tried last by this file for a while, so a dead worker costs
one failed call per piece in flight, not one per piece read.

gRPC errors stop here: callers see `reservoir.errors` only.
"""

from __future__ import annotations

import bisect
import contextvars
import io
import itertools
import logging
import operator
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry import propagate, trace

from reservoir import paths
from reservoir.blocks import BlockId
from reservoir.errors import (
    FailedPrecondition,
    InvalidArgument,
    ReservoirError,
    Unavailable,
)
from reservoir.rpc.master_client import MasterClient
from reservoir.rpc.server import CHANNEL_OPTIONS
from reservoir.v1 import master_pb2, types_pb2, worker_pb2, worker_pb2_grpc

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MiB = 1024 * 1024

# Eight 1 MiB messages per ReadBlock call: the call's round trip is a few percent of
# its transfer, a 64 MiB block is 8 calls that can run in parallel, and a piece in
# memory stays small enough to keep several per open file.
SEGMENT_SIZE = 8 * MiB
# Segments a sequential reader keeps in flight ahead of itself: 64 MiB, one default
# block, so the next block's worker is filling it while the current block streams.
WINDOW = 8
# Concurrent ReadBlock calls per open file. One synchronous stream moves 1.1-1.7 GB/s
# on these machines, so two already exceed a 10 Gbit/s link; the second hides each
# call's start and lets the next block's worker begin its fill. Measured on 2 cores
# with local workers: 1-2 threads reach ~1.1-1.3 GB/s, 4 threads ~0.9, 8 ~0.75 (the
# GIL and the cores are shared).
THREADS = 2
# The least a random read fetches: 256 KiB take about one LAN round trip to send, so
# small scattered reads (headers, footers, indexes) cost one call each and a
# neighbouring small read likely finds its bytes already here.
RANDOM_MIN = 256 * 1024
# One ReadBlock call, whole: on a miss the worker streams while it fills the block, so
# the last segment of a block may wait for a block's worth of origin reads. A worker
# slower than this is given up and the rest of the piece asked of the next one.
RPC_TIMEOUT = 60.0
# How long a worker that failed is tried last by a file: about a worker's lease, by
# the end of which the master has dropped a dead worker, and a live one has recovered.
SUSPECT_SECONDS = 10.0
# Rounds over a block's candidates: with the locations known, then with fresh ones.
ROUNDS = 2

# Worker answers that another worker would give too: raised at once, never retried.
_FINAL: dict[grpc.StatusCode, type[ReservoirError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
}

_tracer = trace.get_tracer(__name__)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderConfig:
    """How a `ReservoirFile` fetches; the defaults suit files of any size."""

    segment_size: int = SEGMENT_SIZE
    window: int = WINDOW
    threads: int = THREADS
    random_min: int = RANDOM_MIN
    rpc_timeout: float = RPC_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("segment_size", "window", "threads", "random_min", "rpc_timeout"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"reader {name} must be positive")


class WorkerChannels:
    """gRPC channels to workers, one per address, shared by every file of a process.

    Channels are thread-safe and reconnect by themselves, so one per worker is all a
    process needs. A forked child starts afresh: gRPC channels do not survive a fork
    (data loaders fork their workers).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[str, worker_pb2_grpc.WorkerServiceStub] = {}

    def stub(self, address: str) -> worker_pb2_grpc.WorkerServiceStub:
        with self._lock:
            if self._pid != os.getpid():  # the parent's channels: never touch them here
                self._pid, self._channels, self._stubs = os.getpid(), {}, {}
            stub = self._stubs.get(address)
            if stub is None:
                channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                self._channels[address] = channel
                stub = self._stubs[address] = worker_pb2_grpc.WorkerServiceStub(channel)
            return stub

    def close(self) -> None:
        with self._lock:
            channels, self._channels, self._stubs = self._channels, {}, {}
        for channel in channels.values():
            channel.close()


_shared_channels = WorkerChannels()


def shared_channels() -> WorkerChannels:
    """The process's channels to workers."""
    return _shared_channels


@dataclass(frozen=True)
class _Location:
    holders: tuple[str, ...]
    fillers: tuple[str, ...]


def _locations(answer: master_pb2.GetBlockLocationsResponse) -> dict[int, _Location]:
    return {b.index: _Location(tuple(b.holders), tuple(b.fillers)) for b in answer.blocks}


class _Data:
    """The bytes of one piece as they arrived: chunks, never joined (a copy saved)."""

    __slots__ = ("chunks", "starts")

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.starts = list(itertools.accumulate((len(c) for c in chunks), initial=0))

    def spans(self, lo: int, hi: int) -> Iterator[tuple[bytes, int, int]]:
        """Bytes [lo, hi) of the piece as (chunk, start, stop) triples."""
        i = bisect.bisect_right(self.starts, lo) - 1
        while lo < hi:
            base, chunk = self.starts[i], self.chunks[i]
            stop = min(len(chunk), hi - base)
            yield chunk, lo - base, stop
            lo, i = base + stop, i + 1


class _Piece:
    """Bytes [start, stop) of the file, fetched (or being fetched) by one task."""

    __slots__ = ("abandoned", "call", "future", "start", "stop")

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop
        self.future: Future[_Data] | None = None
        self.call: grpc.Call | None = None  # the ReadBlock call under way
        self.abandoned = False

    def abandon(self) -> None:
        """Nobody will read this piece: stop fetching it."""
        self.abandoned = True
        if self.future is not None:
            self.future.cancel()
        call = self.call
        if call is not None:
            call.cancel()


class _Abandoned(Exception):
    """A fetch stopped because its piece was evicted or the file closed."""


class ReservoirFile(io.BufferedIOBase):
    """A file of a dataset, read-only, seekable; see the module's design note.

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
        self._pieces: OrderedDict[int, _Piece] = OrderedDict()  # by start, LRU order
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0  # the process the pool's threads live in
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
        self._ahead = 1  # segments to read ahead; 0 while reads are random

    @property
    def name(self) -> str:
        return f"reservoir://{self.dataset}/{self.path}"

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
                # Each chunk is copied once, as it arrives (overlapping the fetches), into
                # a BytesIO whose getvalue() hands its buffer over without a copy.
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
                    newline = chunk.find(b"\n", a, b)
                    if newline >= 0:  # the generator stops here: set the position
                        parts.append(memoryview(chunk)[a : newline + 1])
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

    # -- reading: pieces, read-ahead ----------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # what io's files raise

    def _end(self, size: int | None) -> int:
        if size is None or size < 0:
            return self.size
        return min(self.size, self._pos + size)

    def _spans(self, end: int) -> Iterator[tuple[bytes, int, int]]:
        """The bytes from the position to `end` as (chunk, start, stop) triples,
        moving the position over each triple once its consumer asks for the next."""
        pos = self._pos
        if pos >= end:
            return
        if self._pool is not None and self._pool_pid != os.getpid():
            self._reset()  # a forked child (data loaders fork): start afresh
        if pos != self._expected:  # a random read: stop read-ahead that has not started
            self._ahead = 0
            for piece in [p for p in self._pieces.values() if p.future and p.future.cancel()]:
                self._drop(piece)
        elif not self._ahead:
            self._ahead = 1
        while pos < end:
            piece = self._schedule(pos, end)
            data = self._wait(piece)
            for triple in data.spans(pos - piece.start, min(end, piece.stop) - piece.start):
                yield triple
                pos += triple[2] - triple[1]
                self._pos = self._expected = pos
            if pos == piece.stop and self._ahead:  # passed by a sequential reader
                self._drop(piece)
                self._ahead = min(self._config.window, self._ahead * 2)

    def _schedule(self, pos: int, end: int) -> _Piece:
        """Make sure the pieces this read needs, and its read-ahead, are on their way;
        return the piece holding `pos`."""
        first: _Piece | None = None
        cursor, ahead, budget = pos, self._ahead, self._config.window + 1
        while cursor < self.size and budget:
            if cursor >= end:
                if not ahead:
                    break
                ahead -= 1
            piece = self._piece_at(cursor) or self._start(cursor, end)
            self._pieces.move_to_end(piece.start)
            first = first or piece
            cursor, budget = piece.stop, budget - 1
        assert first is not None
        return first

    def _piece_at(self, pos: int) -> _Piece | None:
        for piece in self._pieces.values():
            if piece.start <= pos < piece.stop:
                return piece
        return None

    def _segment_end(self, pos: int) -> int:
        block_start = pos // self.block_size * self.block_size
        block_end = min(block_start + self.block_size, self.size)
        segment = self._config.segment_size
        return min(block_end, block_start + ((pos - block_start) // segment + 1) * segment)

    def _start(self, start: int, end: int) -> _Piece:
        stop = self._segment_end(start)
        if not self._ahead:  # random: what was asked, not the whole segment
            stop = min(stop, max(end, start + self._config.random_min))
        stop = min([stop, *(p.start for p in self._pieces.values() if p.start > start)])
        while len(self._pieces) >= self._config.window + 2:
            self._drop(next(iter(self._pieces.values())))  # least recently used
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._config.threads, "reservoir-read")
            self._pool_pid = os.getpid()
        piece = _Piece(start, stop)
        # Each task runs in a copy of the reader's context, so its trace span (and the
        # workers' after it) joins the caller's trace.
        piece.future = self._pool.submit(contextvars.copy_context().run, self._fetch, piece)
        self._pieces[start] = piece
        return piece

    def _reset(self) -> None:
        pieces = list(self._pieces.values())
        self._pieces.clear()
        if self._pool_pid != os.getpid():  # forked: the parent's pieces and threads
            self._pool = None
            return
        for piece in pieces:
            piece.abandon()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _drop(self, piece: _Piece) -> None:
        self._pieces.pop(piece.start, None)
        piece.abandon()

    def _wait(self, piece: _Piece) -> _Data:
        assert piece.future is not None
        try:
            return piece.future.result()
        except BaseException:
            self._drop(piece)  # the next read asks again
            raise

    # -- fetching: one piece from the workers, with its fallbacks -----------------

    def _fetch(self, piece: _Piece) -> _Data:
        """Bytes [piece.start, piece.stop): from the block's holders, then its
        fillers, then the same after asking the master again; see the design note."""
        index = piece.start // self.block_size
        key = BlockId(self.dataset, self.path, self.version, index).to_proto()
        offset = piece.start - index * self.block_size  # inside the block
        length = piece.stop - piece.start
        chunks: list[bytes] = []
        got = 0
        tried: list[str] = []
        master_trouble = ""
        what = f"{self.name} (block {index}, bytes {offset}-{offset + length} of it)"
        span: dict[str, str | int] = {
            "reservoir.path": self.name,
            "reservoir.block": index,
            "reservoir.bytes": length,
        }
        with _tracer.start_as_current_span("reservoir.client.fetch", attributes=span):
            for round_ in range(ROUNDS):
                generation = self._generation
                for address in self._candidates(index):
                    if piece.abandoned:
                        raise _Abandoned
                    try:
                        # Read to the stream's end, so the call finishes rather than
                        # being cancelled after its last byte.
                        for data in self._stream(piece, address, key, offset + got, length - got):
                            if got < length:
                                chunks.append(data[: length - got])
                                got += len(chunks[-1])
                        if got == length:
                            return _Data(chunks)
                        trouble = f"its stream ended early, at {got} of {length} bytes"
                    except grpc.RpcError as exc:
                        if piece.abandoned:
                            raise _Abandoned from None
                        code, details = exc.code(), exc.details() or ""
                        final = _FINAL.get(code)
                        if final is not None:
                            raise final(f"{self.name}: {details or code.name}") from None
                        trouble = f"{code.name}: {details}" if details else code.name
                    tried.append(f"{address} ({trouble})")
                    self._suspects[address] = time.monotonic() + SUSPECT_SECONDS
                    # INFO: an unconfigured WARNING would reach the CLI's stderr, where
                    # a failed command prints one line.
                    log.info("reading %s from %s: %s", what, address, trouble)
                if round_ + 1 < ROUNDS:
                    try:
                        self._refresh(generation)
                    except Unavailable as exc:  # try the workers we know once more
                        master_trouble = f"; asking the master again failed: {exc}"
        if not tried:
            raise Unavailable(f"cannot read {what}: no live worker{master_trouble}")
        raise Unavailable(f"cannot read {what}: tried {', '.join(tried)}{master_trouble}")

    def _candidates(self, index: int) -> list[str]:
        """Holders, then fillers; workers that failed lately go last."""
        location = self._locations.get(index, _Location((), ()))
        now = time.monotonic()
        ordered = dict.fromkeys([*location.holders, *location.fillers])
        return sorted(ordered, key=lambda a: self._suspects.get(a, 0.0) > now)

    def _stream(
        self, piece: _Piece, address: str, key: types_pb2.BlockKey, offset: int, length: int
    ) -> Iterator[bytes]:
        """The data of one ReadBlock call, cancelled when the consumer stops."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the trace context, for the worker's spans
        request = worker_pb2.ReadBlockRequest(block=key, offset=offset, length=length)
        call = self._channels.stub(address).ReadBlock(
            request, timeout=self._config.rpc_timeout, metadata=tuple(carrier.items())
        )
        piece.call = call
        if piece.abandoned:
            call.cancel()
        try:
            for message in call:
                if message.data:
                    yield message.data
        finally:
            piece.call = None
            call.cancel()  # nothing once the call is over; stops it when abandoned

    def _refresh(self, generation: int) -> None:
        """Ask the master for the locations again, once however many pieces failed."""
        with self._refresh_lock:
            if generation != self._generation:
                return  # another piece has asked since this one started
            answer = self._locate()
            if answer.file.version != self.version:
                raise FailedPrecondition(
                    f"{self.name} changed while it was read (version {self.version!r} is now "
                    f"{answer.file.version!r}): open it again"
                )
            self._locations = _locations(answer)
            self._generation += 1

    def _locate(self) -> master_pb2.GetBlockLocationsResponse:
        request = master_pb2.GetBlockLocationsRequest(dataset=self.dataset, path=self.path)
        answer: master_pb2.GetBlockLocationsResponse = self._master.call(
            "GetBlockLocations", request
        )
        return answer
