"""Streams and read-ahead (the design note's first two parts, and its random reads):
which pieces a read opens, how far ahead, which workers are asked to cache what,
and the reader's own receiving of the chunks it needs, as (chunk, start, stop)
spans that the file interface copies out once."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterator

import grpc
from opentelemetry import propagate

from reservoir.blocks import BlockId
from reservoir.client.reader.pieces import _Chunk, _Piece
from reservoir.client.reader.prefetch import _Prefetching
from reservoir.errors import ReservoirError
from reservoir.v1 import worker_pb2


class _Streaming(_Prefetching):
    """Part of `ReservoirFile`: reading, pieces, read-ahead."""

    # See `ReservoirFile.__init__`.
    size: int
    _hinted: set[int]
    _pos: int
    _expected: int
    _ahead: int
    _frontier: int

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

    def _held(self) -> int:
        """Bytes held by this file's pieces (for tests)."""
        return sum(p.held() for p in self._pieces.values())
