"""The prefetch thread: between reads, it receives the open calls' chunks up to the
read-ahead limit (the design note's "Prefetching between reads"). Here too is
`_step`, how the reader or that thread receives a piece's next chunk, and what a
fork does to the file's threads (its "Forks")."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict

import grpc

from reservoir.client.reader.config import PREFETCH_DELAY_SECONDS, PREFETCH_IDLE_SECONDS
from reservoir.client.reader.fetch import _Fetching, _orphans
from reservoir.client.reader.pieces import _Chunk, _Piece
from reservoir.v1 import worker_pb2


class _Prefetching(_Fetching):
    """Part of `ReservoirFile`: the chunks received by whichever thread needs them."""

    # See `ReservoirFile.__init__`.
    _cv: threading.Condition
    _pieces: OrderedDict[int, _Piece]
    _hints: list[grpc.Future[worker_pb2.CacheBlockResponse]]
    _reading: bool
    _closing: bool
    _paused: bool
    _prefetcher: threading.Thread | None
    _read_ended: float
    _pid: int
    _limit: int

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

    # -- forks ---------------------------------------------------------------------

    def _quiesce(self, deadline: float) -> None:
        """Before a fork: no chunk being received, no call open (see `_forks`, fetch.py)."""
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
