"""Pieces: the byte ranges a file holds, each with the ReadBlock call(s) that bring
it and the chunks received so far; what the reader, the prefetch thread and the
fetches share."""

from __future__ import annotations

from collections.abc import Generator

import grpc
from opentelemetry import context as otel_context

# A chunk of a piece, as `_receive` yields it: the data of a ReadBlock message, a
# memoryview of it (`_messages`), whole or cut at the piece's end; or b"".
_Chunk = bytes | memoryview


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
