"""Fetching: one piece from the workers, with its fallbacks (the design note's
"Failures"), and the fork hooks that let a fetch go on after its call was cancelled
for a fork (its "Forks"). gRPC errors stop here."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry import propagate, trace

from reservoir.blocks import BlockId
from reservoir.client.reader.config import (
    FORK_QUIET_SECONDS,
    ROUNDS,
    SUSPECT_SECONDS,
    ReaderConfig,
)
from reservoir.client.reader.pieces import _Abandoned, _Chunk, _Piece
from reservoir.errors import (
    FailedPrecondition,
    InvalidArgument,
    ReservoirError,
    Unavailable,
)
from reservoir.rpc.channels import WorkerChannels
from reservoir.rpc.master_client import MasterClient
from reservoir.v1 import master_pb2, types_pb2, worker_pb2

if TYPE_CHECKING:
    from reservoir.client.reader.file import ReservoirFile

# Worker answers that another worker would give too: raised at once, never retried.
_FINAL: dict[grpc.StatusCode, type[ReservoirError]] = {
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
}

# Named after the package, not this module: spans and log records say
# reservoir.client.reader, whichever part of the reader they come from.
_tracer = trace.get_tracer("reservoir.client.reader")
log = logging.getLogger("reservoir.client.reader")


@dataclass(frozen=True)
class _Location:
    holders: tuple[str, ...]
    fillers: tuple[str, ...]


def _locations(answer: master_pb2.GetBlockLocationsResponse) -> dict[int, _Location]:
    return {b.index: _Location(tuple(b.holders), tuple(b.fillers)) for b in answer.blocks}


# gRPC does not survive a fork with calls under way: a child that then makes calls of
# its own can abort inside gRPC. Before a fork, every open file lets the chunk being
# received arrive and cancels its calls (bumping `_forks`; `_quiesce`, in prefetch.py);
# in the parent, a fetch whose call was cancelled for a fork calls the same worker
# again from the byte reached. The child starts afresh on its first read (`_forked`).
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


class _Fetching:
    """Part of `ReservoirFile`: where each block lives, and the ReadBlock calls that
    bring a piece (set up by `ReservoirFile.__init__`)."""

    dataset: str
    path: str
    version: str
    block_size: int
    _master: MasterClient
    _config: ReaderConfig
    _channels: WorkerChannels
    _locations: dict[int, _Location]
    _generation: int
    _refresh_lock: threading.Lock
    _suspects: dict[str, float]

    @property
    def name(self) -> str:
        return f"reservoir://{self.dataset}/{self.path}"

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
