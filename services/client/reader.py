"""Reading a file of a dataset: a read-only binary file object over the workers.

Prefetch design
---------------
At open, `ReservoirFile` asks the master once where each block of the file lives
(GetBlockLocations); from then on it reads from the workers directly. It holds parts
of the file as *pieces*: byte ranges never crossing a block, each brought by one
ReadBlock call (or several when a worker fails) and kept as the *chunks* (messages,
1 MiB from a worker) received so far. Three parts:

- Streams. A sequential read (one that starts where the previous one ended, or in
  bytes a stream holds; the first read at offset 0 counts) reads one call per block,
  from the position to the block's end. The reader receives the chunks itself, in
  its own thread, as it needs them, and copies each one once, into the caller's
  buffer, while it is still in the CPU cache; a stream lets go of each chunk the
  reader has passed.
- Read-ahead. The *read-ahead limit* is the position plus `ahead` segments of
  `segment_size`; `ahead` starts at 1 and doubles with each segment read, up to
  `window`. Blocks that start below the limit get their calls opened while fewer
  than `threads` calls are open (the call the reader needs always opens), and the
  others have their workers asked to cache them (CacheBlock, answered but not waited
  for): a cold block's fill starts at once, while the reader is still on the block
  before, without its bytes moving yet. With the defaults (8 x 8 MiB = one 64 MiB
  block, one call) the next block's worker is asked as the reader enters a block,
  and its call opens as the reader reaches it. A reader that wants only a header
  opens one call and receives about one segment.
- Prefetching between reads. When the caller has not read again for a moment
  (`PREFETCH_DELAY_SECONDS`), one thread per file (started when needed, ended when
  idle) receives the open calls' chunks, nearest first, up to the read-ahead limit,
  so that the transfer goes on while the caller works on what it read. During a
  read it stands back, and gRPC's flow control holds the workers back at the limit.

Why so (bench/README.md; 2 cores, warm 256 MiB reads): a reader that waited for
whole 8 MiB pieces fetched by pool threads spent most of its time waiting, and an
8 MiB call moves about 0.65 GB/s where one call per 64 MiB block moves about 1.05.
Chunks handed from fetch threads to the reader as they arrive still cost a thread
switch per chunk: 0.75-0.83 GB/s, where receiving in the reader's own thread reached
1.07. A second stream received at the same time cost about 5% more, and a prefetch
thread that ran between back-to-back reads more faults and switches, hence the two
rules above.

Random reads (any other) first cancel the streams' calls and fetch only the bytes
asked for (at least `random_min`, about what one round trip costs), without
read-ahead. A random piece up to `segment_size` is *kept*, in LRU order, for nearby
reads (the prefetch thread receives the rest of it); a larger one is read like a
stream. A read that goes on from where one ended streams again.

Bounds per open file: at most `window + 2` pieces (the least recently used is
dropped, and its call cancelled), and `threads` calls open for read-ahead besides
the one the reader needs. Kept pieces hold at most `segment_size` each; streams hold
what lies between the position and the read-ahead limit (`window x segment_size`)
plus a chunk each, and gRPC buffers at most a call's HTTP/2 window for each call
open. So memory stays below (2 x window + 2) x segment_size plus a few chunks and
windows, whatever the file's size; a piece the sequential reader has passed is
dropped at once. A config such as segment_size=256 KiB, window=1, threads=1 reads in
small steps: one call open, 256 KiB ahead.

Failures (`_receive` is the one function to read for them): a piece goes to the
block's first holder, else its first filler. When a worker fails (unreachable,
deadline, stream broken or ended early, NOT_FOUND...), the bytes of the piece not yet
received are asked of the next candidate: holders, then fillers, skipping those that
failed; a stream that broke after k bytes goes on from its offset + k. Once all have
failed, the master is asked again for the locations and each candidate gets one more
try; then Unavailable names the workers tried. FAILED_PRECONDITION (the origin object
changed since the last sync) is raised at once. A call that reaches its deadline
after sending bytes, or while nobody was waiting for it (a call opened ahead, or a
reader that paused), goes on at the same worker. A worker that failed is tried last
by this file for a while, so a dead worker costs one failed call per piece in flight,
not one per piece read.

Forks (data loaders fork their workers): gRPC does not survive a fork with calls
open, so before a fork each file lets a chunk being received arrive and cancels its
calls; the parent's fetches call again from the byte reached, and a child starts
afresh with its own channels.

gRPC errors stop here: callers see `reservoir.errors` only.
"""

from __future__ import annotations

import bisect
import io
import logging
import operator
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from reservoir import paths
from reservoir.blocks import BlockId
from reservoir.errors import (
    FailedPrecondition,
    InvalidArgument,
    ReservoirError,
    Unavailable,
)
from reservoir.rpc.channels import WorkerChannels, shared_channels
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, types_pb2, worker_pb2

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MiB = 1024 * 1024

# The unit of read-ahead, and the largest random piece kept for nearby reads.
SEGMENT_SIZE = 8 * MiB
# Segments of read-ahead a sequential reader reaches: 64 MiB, one default block, so
# the next block's worker is asked for it as the reader enters a block, and fills it
# while the current block is read.
WINDOW = 8
# ReadBlock calls open at once per file for read-ahead (the name is older than the
# design: the calls are read by the reader's own thread). One synchronous stream
# moves 1.1-1.7 GB/s on these machines, more than a 10 Gbit/s link; a second one,
# received at the same time, cost about 5% of a warm read on 2 cores. The workers of
# the blocks after are asked to cache them (CacheBlock) instead, which starts their
# fills as early without moving their bytes yet.
THREADS = 1
# The least a random read fetches: 256 KiB take about one LAN round trip to send, so
# small scattered reads (headers, footers, indexes) cost one call each and a
# neighbouring small read likely finds its bytes already here.
RANDOM_MIN = 256 * 1024
# One ReadBlock call, whole: on a miss the worker streams while it fills the block, so
# a call may wait for a block's worth of origin reads. A worker that sends nothing for
# this long is given up and the rest of the piece asked of the next one; a call that
# sent bytes but outlived this (its reader was slow) goes on at the same worker.
RPC_TIMEOUT = 60.0
# How long a worker that failed is tried last by a file: about a worker's lease, by
# the end of which the master has dropped a dead worker, and a live one has recovered.
SUSPECT_SECONDS = 10.0
# Rounds over a block's candidates: with the locations known, then with fresh ones.
ROUNDS = 2
# How long after a read the prefetch thread starts receiving: a caller that reads
# again at once (a copy, a FUSE mount's stream of reads) is faster receiving itself,
# without a thread switch per chunk, while one that works on what it read for longer
# has the transfer go on meanwhile.
PREFETCH_DELAY_SECONDS = 0.002
# How long a file's prefetch thread waits for work before it ends (a later read
# starts another).
PREFETCH_IDLE_SECONDS = 2.0
# How long a fork waits for a chunk being received to arrive before it goes ahead.
FORK_QUIET_SECONDS = 1.0
_NEWLINE = re.compile(b"\n")

# A chunk of a piece, as `_receive` yields it: the data of a ReadBlock message, a
# memoryview of it (`_messages`), whole or cut at the piece's end; or b"".
_Chunk = bytes | memoryview

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


@dataclass(frozen=True)
class _Location:
    holders: tuple[str, ...]
    fillers: tuple[str, ...]


def _locations(answer: master_pb2.GetBlockLocationsResponse) -> dict[int, _Location]:
    return {b.index: _Location(tuple(b.holders), tuple(b.fillers)) for b in answer.blocks}


class _Piece:
    """Bytes [start, stop) of the file: the ReadBlock call(s) that bring them, and the
    chunks received so far.

    `source` (`ReservoirFile._receive`) yields the chunks, moving to another worker
    when one fails. Whoever needs the next chunk drives it one step, under the file's
    condition (`busy`): the reader, in its own thread, or the prefetch thread, while
    no read is under way. A kept piece holds its chunks until it is dropped; a streamed
    one lets go of each chunk the reader has passed (`floor`).
    """

    __slots__ = (
        "abandoned",
        "busy",
        "call",
        "chunks",
        "context",
        "done",
        "error",
        "floor",
        "keep",
        "offsets",
        "received",
        "released",
        "source",
        "start",
        "stop",
        "waited",
    )

    def __init__(self, start: int, stop: int, *, keep: bool) -> None:
        self.start, self.stop, self.keep = start, stop, keep
        self.chunks: list[_Chunk | None] = []  # None: let go of
        self.offsets: list[int] = []  # where each chunk starts, in the file
        self.received = start  # bytes [start, received) have arrived
        self.floor = start  # and [floor, received) are still held
        self.released = 0  # chunks before this index are let go of
        self.source: Generator[_Chunk | None, None, None] | None = None
        self.busy = False  # a thread is driving `source`
        self.done = False  # `source` has ended: every byte received, or `error`
        self.error: BaseException | None = None
        self.call: grpc.Call | None = None  # the ReadBlock call open
        self.waited = 0.0  # seconds spent waiting for that call's messages
        self.context = otel_context.get_current()  # the trace its fetch joins
        self.abandoned = False

    def wanted(self) -> bool:
        return not (self.done or self.busy or self.abandoned) and self.received < self.stop

    def release(self, upto: int) -> None:
        """Let go of the chunks before index `upto` (a streamed piece, by the reader)."""
        for j in range(self.released, upto):
            self.chunks[j] = None
        if upto > self.released:
            self.released = upto
            self.floor = self.offsets[upto] if upto < len(self.offsets) else self.received

    def held(self) -> int:
        """Bytes held (for tests and the bounds in the design note)."""
        return self.received - self.floor


class _Abandoned(Exception):
    """A fetch stopped because its piece was dropped or the file closed."""


# gRPC does not survive a fork with calls under way: a child that then makes calls of
# its own can abort inside gRPC. Before a fork, every open file lets the chunk being
# received arrive and cancels its calls (bumping `_forks`); in the parent, a fetch
# whose call was cancelled for a fork calls the same worker again from the byte
# reached. The child starts afresh on its first read.
_files: weakref.WeakSet[ReservoirFile] = weakref.WeakSet()
_forks = 0
_orphans: list[object] = []  # a forked child's copies of its parent's pieces, calls


def _before_fork() -> None:
    global _forks
    _forks += 1
    deadline = time.monotonic() + FORK_QUIET_SECONDS
    for file in list(_files):
        file._quiesce(deadline)


def _after_fork_in_parent() -> None:
    for file in list(_files):
        file._unquiesce()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)


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

    # -- reading: pieces, read-ahead -----------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")  # what io's files raise

    def _end(self, size: int | None) -> int:
        if size is None or size < 0:
            return self.size
        return min(self.size, self._pos + size)

    def _spans(self, end: int) -> Iterator[tuple[_Chunk, int, int]]:
        """The bytes from the position to `end` as (chunk, start, stop) triples,
        moving the position over each triple once its consumer asks for the next."""
        pos = self._pos
        if pos >= end:
            return
        if self._pid != os.getpid():
            self._forked()
        with self._cv:
            self._reading = True  # the prefetch thread stands back
        try:
            yield from self._read_spans(pos, end)
        finally:
            with self._cv:
                self._reading = False
                self._read_ended = time.monotonic()
                if any(p.wanted() and p.received < self._limit for p in self._pieces.values()):
                    self._prefetch_later()

    def _read_spans(self, pos: int, end: int) -> Iterator[tuple[_Chunk, int, int]]:
        if pos != self._expected and not self._streamed(pos):
            self._ahead = 0  # a random read: stop the streams
            for piece in [p for p in self._pieces.values() if not p.keep]:
                self._drop(piece)
        else:
            self._ahead = self._ahead or 1
            for piece in [p for p in self._pieces.values() if p.stop <= pos and not p.keep]:
                self._drop(piece)  # streams a seek forward went past
        segment = self._config.segment_size
        while pos < end:
            self._advance(pos)
            piece = self._schedule(pos, end)
            hi = min(end, piece.stop)
            try:
                for triple in self._piece_spans(piece, pos, hi):
                    yield triple
                    before, pos = pos, pos + triple[2] - triple[1]
                    self._pos = self._expected = pos
                    crossed = pos // segment - before // segment
                    if crossed and self._ahead:  # a segment read: more read-ahead
                        self._ahead = min(self._config.window, self._ahead << min(crossed, 32))
                    self._advance(pos)
                    if self._ahead and self._limit > self._frontier and pos < self.size:
                        self._schedule(pos, end)  # read-ahead reaches past the calls open
            except GeneratorExit:  # the consumer stopped early (readline)
                raise
            except BaseException:
                self._drop(piece)  # failed or interrupted: the next read asks again
                raise
            if pos == piece.stop and (self._ahead or not piece.keep):  # passed
                self._drop(piece)

    def _piece_spans(self, piece: _Piece, pos: int, hi: int) -> Iterator[tuple[_Chunk, int, int]]:
        """Bytes [pos, hi) of `piece` as (chunk, start, stop) triples, each as soon as it
        has arrived: the reader receives what it needs itself."""
        i = -1
        while pos < hi:
            if pos >= piece.received:
                self._receive_for_reader(piece, pos)
            if i < 0:  # the first chunk: let go of those a seek skipped, if streamed
                i = bisect.bisect_right(piece.offsets, pos) - 1
                if not piece.keep:
                    piece.release(i)
            chunk, base = piece.chunks[i], piece.offsets[i]
            assert chunk is not None
            stop = min(len(chunk), hi - base)
            yield chunk, pos - base, stop
            pos = base + stop
            if stop == len(chunk):
                i += 1
                if not piece.keep:
                    piece.release(i)

    def _receive_for_reader(self, piece: _Piece, pos: int) -> None:
        """Until byte `pos` of `piece` has arrived: drive its source, or wait while the
        prefetch thread does; raise what ended the piece short of it."""
        while True:
            with self._cv:
                while True:
                    if pos < piece.received:
                        return
                    if piece.done:
                        raise piece.error or ReservoirError(f"{self.name}: a fetch ended early")
                    if not piece.busy and not self._paused:
                        piece.busy = True
                        break
                    self._cv.wait()
            self._step(piece)

    def _step(self, piece: _Piece) -> None:
        """Receive one chunk of `piece` (its `busy` set by the caller), or its end."""
        assert piece.source is not None
        chunk: _Chunk | None = None
        error: BaseException | None = None
        try:
            chunk = next(piece.source)
        except StopIteration:
            pass
        except BaseException as exc:  # the reader raises it, if it still wants the piece
            error = exc
        with self._cv:
            if chunk is not None:
                piece.offsets.append(piece.received)
                piece.chunks.append(chunk)
                piece.received += len(chunk)
            # All received (or dropped meanwhile): end the fetch and its span now,
            # still `busy`, so that nobody else touches the source meanwhile.
            ended = chunk is None or piece.received >= piece.stop or piece.abandoned
            if not ended:
                piece.busy = False
            self._cv.notify_all()
        if ended:
            if chunk is not None:
                piece.source.close()
            with self._cv:
                piece.done, piece.error, piece.busy = True, error, False
                self._cv.notify_all()

    def _streamed(self, pos: int) -> bool:
        """Whether `pos` is in bytes a stream holds, or is its next byte: a seek
        forward into them, or back inside the chunk being read, goes on streaming."""
        return any(
            not p.keep and p.floor <= pos <= p.received and pos < p.stop
            for p in self._pieces.values()
        )

    def _advance(self, pos: int) -> None:
        window = self._ahead or self._config.window  # random: bounds a large read
        self._limit = pos + window * self._config.segment_size

    def _schedule(self, pos: int, end: int) -> _Piece:
        """Make sure the piece holding `pos` has its call open, and the ones after it
        up to the read-ahead limit (sequential) or `end` (random) while fewer than
        `threads` calls are open; return the piece holding `pos`."""
        target = min(self.size, self._limit if self._ahead else end)
        first: _Piece | None = None
        cursor, budget = pos, self._config.window + 1
        while budget and (first is None or cursor < target):
            piece = self._piece_at(cursor)
            if piece is None:
                if first is not None and self._open_calls() >= self._config.threads:
                    break
                piece = self._start(cursor, end)
            self._pieces.move_to_end(piece.start)
            first = first or piece
            cursor, budget = piece.stop, budget - 1
        assert first is not None
        if cursor < target:  # beyond the calls open: have their workers start
            for index in range(cursor // self.block_size, (target - 1) // self.block_size + 1):
                if index not in self._hinted:
                    self._hint(index)
        return first

    def _hint(self, index: int) -> None:
        """Ask the worker that will serve block `index` to cache it (CacheBlock): a cold
        block's fill starts now, while the blocks before it are read. An answer is
        not waited for, and a failure is left to the block's own read."""
        self._hinted.add(index)
        candidates = self._candidates(index)
        if not candidates:
            return
        key = BlockId(self.dataset, self.path, self.version, index).to_proto()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        stub = self._channels.stub(candidates[0])
        call: grpc.Future[worker_pb2.CacheBlockResponse] = stub.CacheBlock.future(
            worker_pb2.CacheBlockRequest(block=key),
            timeout=self._config.rpc_timeout,
            metadata=tuple(carrier.items()),
        )
        # Kept until answered: gRPC cancels a call whose future is collected.
        self._hints = [h for h in self._hints if not h.done()] + [call]

    def _piece_at(self, pos: int) -> _Piece | None:
        for piece in self._pieces.values():
            if piece.floor <= pos < piece.stop:
                return piece
        return None

    def _open_calls(self) -> int:
        return sum(not p.done for p in self._pieces.values())

    def _segment_end(self, pos: int) -> int:
        block_start = pos // self.block_size * self.block_size
        block_end = min(block_start + self.block_size, self.size)
        segment = self._config.segment_size
        return min(block_end, block_start + ((pos - block_start) // segment + 1) * segment)

    def _start(self, start: int, end: int) -> _Piece:
        """A new piece from `start`, its call open (the worker starts at once)."""
        stop = min((start // self.block_size + 1) * self.block_size, self.size)
        keep = False  # sequential: stream to the block's end
        if not self._ahead:  # random: what was asked; kept if small
            stop = min(stop, max(end, start + self._config.random_min))
            keep = stop - start <= self._config.segment_size
        stop = min([stop, *(p.start for p in self._pieces.values() if p.start > start)])
        while len(self._pieces) >= self._config.window + 2:
            self._drop(next(iter(self._pieces.values())))  # least recently used
        piece = _Piece(start, stop, keep=keep)
        piece.source = self._receive(piece)
        try:
            next(piece.source)  # opens the first call
        except BaseException as exc:  # raised when the reader gets there
            piece.done, piece.error = True, exc
        self._pieces[start] = piece
        self._frontier = stop
        return piece

    def _drop(self, piece: _Piece) -> None:
        self._pieces.pop(piece.start, None)
        self._abandon(piece)

    def _abandon(self, piece: _Piece) -> None:
        """Nobody will read `piece`: cancel its call, let go of its bytes."""
        piece.abandoned = True
        call = piece.call
        if call is not None:
            call.cancel()
        with self._cv:
            piece.chunks, piece.floor = [], piece.received
            idle = not (piece.busy or piece.done)  # else its driver ends it
            if idle:
                piece.busy = True  # this thread's now, to end it
        if idle:
            if piece.source is not None:
                piece.source.close()
            with self._cv:
                piece.done, piece.busy = True, False
                self._cv.notify_all()

    def _reset(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        pieces = list(self._pieces.values())
        self._pieces.clear()
        for piece in pieces:
            self._abandon(piece)
        for hint in self._hints:
            hint.cancel()  # the workers' fills go on
        self._hints = []

    def _forked(self) -> None:
        """In a forked child (data loaders fork): start afresh. The parent's pieces,
        calls, threads and locks are not touched (their calls were cancelled before
        the fork); the pieces are kept from the collector, which would close them."""
        _orphans.extend([*self._pieces.values(), *self._hints])
        self._pieces, self._hints = OrderedDict(), []
        self._cv = threading.Condition(threading.Lock())
        self._refresh_lock = threading.Lock()
        self._reading = self._paused = False
        self._prefetcher = None
        self._pid = os.getpid()

    def _held(self) -> int:
        """Bytes held by this file's pieces (for tests)."""
        return sum(p.held() for p in self._pieces.values())

    # -- prefetching, between reads ------------------------------------------------

    def _prefetch_later(self) -> None:
        """Have the prefetch thread receive what the read-ahead allows (under `_cv`)."""
        if self._prefetcher is None:
            self._prefetcher = threading.Thread(
                target=self._prefetch, name="reservoir-prefetch", daemon=True
            )
            self._prefetcher.start()
        else:
            self._cv.notify_all()

    def _prefetch(self) -> None:
        """The prefetch thread: while no read is under way, receive the chunks of the
        open calls up to the read-ahead limit, nearest first. It ends when idle."""
        while True:
            with self._cv:
                idle_until = time.monotonic() + PREFETCH_IDLE_SECONDS
                while True:
                    piece = None
                    if self._closing or self._pid != os.getpid():
                        self._prefetcher = None
                        return
                    if not (self._reading or self._paused):
                        soon = self._read_ended + PREFETCH_DELAY_SECONDS - time.monotonic()
                        if soon > 0:  # the caller may read again at once
                            self._cv.wait(soon)
                            continue
                        wanted = [
                            p
                            for p in self._pieces.values()
                            if p.wanted() and p.received < self._limit
                        ]
                        piece = min(wanted, key=lambda p: p.start, default=None)
                    if piece is not None:
                        piece.busy = True
                        break
                    left = idle_until - time.monotonic()
                    if left <= 0:
                        self._prefetcher = None
                        return
                    self._cv.wait(left)
            self._step(piece)

    def _quiesce(self, deadline: float) -> None:
        """Before a fork: no chunk being received, no call open (see `_forks`)."""
        with self._cv:
            self._paused = True
            pieces = list(self._pieces.values())  # at once: a read may be changing them
            while any(p.busy for p in pieces):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            calls = [p.call for p in pieces if p.call is not None]
        cancelled: list[grpc.Call | grpc.Future[worker_pb2.CacheBlockResponse]]
        cancelled = [*calls, *list(self._hints)]
        for call in cancelled:
            call.cancel()

    def _unquiesce(self) -> None:
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    # -- fetching: one piece from the workers, with its fallbacks -----------------

    def _receive(self, piece: _Piece) -> Generator[_Chunk | None, None, None]:
        """The chunks of bytes [piece.start, piece.stop), after a None once the first
        call is open: from the block's holders, then its fillers, then the same after
        asking the master again; see the design note."""
        index = piece.start // self.block_size
        key = BlockId(self.dataset, self.path, self.version, index).to_proto()
        offset = piece.start - index * self.block_size  # inside the block
        length = piece.stop - piece.start
        got = 0
        last: _Chunk = b""  # the last chunk, handed over once its call has ended
        opened = False
        tried: list[str] = []
        master_trouble = ""
        what = f"{self.name} (block {index}, bytes {offset}-{offset + length} of it)"
        attributes: dict[str, str | int] = {
            "reservoir.path": self.name,
            "reservoir.block": index,
            "reservoir.bytes": length,
        }
        # Started and ended by hand: the chunks may be received by different threads.
        span = _tracer.start_span(
            "reservoir.client.fetch", context=piece.context, attributes=attributes
        )
        try:
            for round_ in range(ROUNDS):
                generation = self._generation
                for address in self._candidates(index):
                    while True:  # the same worker again, after a deadline not its fault
                        if piece.abandoned:
                            raise _Abandoned
                        forks, before = _forks, got
                        call = self._open(piece, span, address, key, offset + got, length - got)
                        try:
                            if not opened:
                                opened = True
                                yield None
                            for data in self._messages(piece, call):
                                if got < length:
                                    chunk = data[: length - got]  # no copy if whole
                                    got += len(chunk)
                                    if got < length:
                                        yield chunk
                                    else:  # read to the end: the call finishes
                                        last = chunk  # rather than being cancelled
                            if got == length:
                                yield last
                                return
                            trouble = f"its stream ended early, at {got} of {length} bytes"
                        except grpc.RpcError as exc:
                            if piece.abandoned:
                                raise _Abandoned from None
                            if got == length:  # every byte is here: the status is moot
                                yield last
                                return
                            if _forks != forks:
                                continue  # cancelled for a fork: go on where it was
                            code, details = exc.code(), exc.details() or ""
                            final = _FINAL.get(code)
                            if final is not None:
                                raise final(f"{self.name}: {details or code.name}") from None
                            if code == grpc.StatusCode.DEADLINE_EXCEEDED and (
                                got > before or piece.waited < self._config.rpc_timeout / 2
                            ):
                                continue  # it was sending, or nobody was asking
                            trouble = f"{code.name}: {details}" if details else code.name
                        finally:
                            piece.call = None
                            call.cancel()  # nothing once the call is over
                        break
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
        except (ReservoirError, grpc.RpcError) as exc:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
            raise
        finally:
            span.end()

    def _candidates(self, index: int) -> list[str]:
        """Holders, then fillers; workers that failed lately go last."""
        location = self._locations.get(index, _Location((), ()))
        now = time.monotonic()
        ordered = dict.fromkeys([*location.holders, *location.fillers])
        return sorted(ordered, key=lambda a: self._suspects.get(a, 0.0) > now)

    def _open(
        self,
        piece: _Piece,
        span: trace.Span,
        address: str,
        key: types_pb2.BlockKey,
        offset: int,
        length: int,
    ) -> grpc.Call:
        """One ReadBlock call, open: the worker starts at once, whoever reads it."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span, piece.context))
        request = worker_pb2.ReadBlockRequest(block=key, offset=offset, length=length)
        call: grpc.Call = self._channels.stub(address).ReadBlock(
            request, timeout=self._config.rpc_timeout, metadata=tuple(carrier.items())
        )
        piece.call, piece.waited = call, 0.0
        if piece.abandoned:
            call.cancel()
        return call

    @staticmethod
    def _messages(piece: _Piece, call: grpc.Call) -> Iterator[memoryview]:
        """The data of a call's messages, counting the time spent waiting for them."""
        messages = iter(call)  # type: ignore[call-overload]
        while True:
            began = time.monotonic()
            try:
                message = next(messages)
            except StopIteration:
                return
            finally:
                piece.waited += time.monotonic() - began
            if message:
                yield message

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
