"""A block being filled: a buffer that grows, and readers that stream from it as it does.

The fill writes chunks in order; a reader waits only for the bytes it needs, so the
first bytes reach a reader while the rest of the block is still on its way. Bytes
once written never change (every source serves the same version), which is also
what lets a fill switch sources mid-way and continue at `filled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import mmap
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

_MADV_POPULATE_WRITE = 23  # Linux 5.14+: fault pages in, writable, without writing them
# Its own threads: queued behind disk reads or master calls in the default executor,
# the faulting would come too late to help (and would hold them up).
_prefaulter = ThreadPoolExecutor(2, "fill-prefault")


class Fill:
    def __init__(self, file_offset: int, length: int) -> None:
        """A fill of the `length` bytes at `file_offset` in the file."""
        self.file_offset = file_offset
        self.length = length
        # Where the bytes came from, for metrics: "peer" or "origin".
        self.source = "origin"
        # An anonymous mapping, not a bytearray: the kernel hands out zeroed pages as
        # they are first written, where bytearray(64 MiB) zeroes the whole block on the
        # event loop (~70 ms here) before the first byte can be sent. The fill hands
        # this same buffer to the store: no copy of the block after it arrives.
        self.buffer = mmap.mmap(-1, max(length, 1))
        # Faulting the fresh pages in costs about 1 ms per MiB here; done by another
        # thread, ahead of the writes, it stays off the event loop.
        self._populating = asyncio.get_running_loop().run_in_executor(
            _prefaulter, _populate, self.buffer
        )
        self.filled = 0
        self.error: BaseException | None = None
        self.done = False
        self._changed = asyncio.Condition()

    async def write(self, chunk: bytes | memoryview) -> None:
        end = self.filled + len(chunk)
        if end > self.length:
            raise ValueError(f"the source sent {end} bytes for a block of {self.length}")
        self.buffer[self.filled : end] = chunk
        self.filled = end
        async with self._changed:
            self._changed.notify_all()

    async def finish(self, error: BaseException | None = None) -> None:
        if error is None and self.filled != self.length:
            error = ValueError(f"the source ended after {self.filled} of {self.length} bytes")
        self.error, self.done = error, True
        async with self._changed:
            self._changed.notify_all()

    async def wait(self) -> None:
        """Until the fill is over; raises its error if it failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.done)
        if self.error:
            raise self.error

    def data(self) -> mmap.mmap:
        """The whole block, once the fill has completed."""
        assert self.done and self.error is None
        return self.buffer

    async def read(self, offset: int, end: int, chunk: int) -> AsyncIterator[memoryview]:
        """Bytes [offset, end) of the block in pieces of at most `chunk`, as they arrive:
        views of the buffer, since bytes once written never change."""
        view = memoryview(self.buffer)
        position = offset
        while position < end:

            def arrived(p: int = position) -> bool:
                return self.filled > p or self.error is not None or self.done

            async with self._changed:
                await self._changed.wait_for(arrived)
            if self.error is not None:
                raise self.error
            available = min(self.filled, end)
            while position < available:
                step = min(chunk, available - position)
                yield view[position : position + step]
                position += step


def _populate(buffer: mmap.mmap) -> None:
    """Fault in `buffer`'s pages (through ctypes, which lets go of the GIL, where
    mmap.madvise holds it); nothing happens where the kernel lacks the advice."""
    with contextlib.suppress(OSError, AttributeError, ValueError, TypeError):
        view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
        try:
            _libc().madvise(ctypes.addressof(view), len(buffer), _MADV_POPULATE_WRITE)
        finally:
            del view


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc
