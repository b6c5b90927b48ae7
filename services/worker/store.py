"""The worker's block store: a memory tier over a disk tier, each LRU within a quota.

Design note
-----------
- Held. A block is held when it is in memory or on disk. `put` writes through to both
  tiers (the disk copy is what survives a restart); a disk hit is promoted to memory.
  Evicting a block from memory leaves it held if it is on disk.
- Quotas count block bytes, not file headers (~200 bytes per block) nor file-system
  rounding, so a 4 GiB disk quota holds exactly 64 blocks of 64 MiB. A quota of 0
  turns its tier off (a disk tier that is off never touches the cache directory); a
  block larger than a tier's quota skips that tier.
- Eviction. A tier makes room by dropping its least recently used unpinned blocks; if
  pinned blocks leave too little room, the new block skips that tier. `pin` is a
  reentrant count that readers hold while they stream a block.
- Threads. All bookkeeping (indexes, pins, counters, changes) happens on the event-loop
  thread, so it needs no locks; file I/O runs in threads. Writing a block to disk is
  background work (its bytes are already in memory, and already on their way to the
  readers), so it runs in one writer thread at a lower CPU priority: when the cores
  are busy, fills and reads go first. Across those
  awaits: space for a disk write is reserved before it starts; a disk read pins its
  block; a block is not written while its old file is still being deleted (same
  path), nor twice at once. Disk work is shielded, so a cancelled caller never leaves
  the index and the files disagreeing.
- Faults. A corrupt or unreadable block file is deleted and reported as a miss, never
  served (format and checks: `disk_tier`). A failed disk write (a full disk...) keeps
  the memory copy; `put` answers False only when no tier holds the block.
- Changes. `on_change` is called as soon as a block becomes held or stops being held
  (a block is held once in memory, before its disk write ends), and `drain_changes`
  gives the net change in held blocks since the last drain, for incremental reports
  to the master; `held` gives the whole set, for a full report
  after (re)registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Container, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reservoir.blocks import BlockData, BlockId
from reservoir.units import format_size
from reservoir.worker import disk_tier

log = logging.getLogger(__name__)

MEM, DISK = "MEM", "DISK"  # tier names, as the master and `reservoir workers` show them

_T = TypeVar("_T")
# How much less CPU priority the disk writer gets (a nice value; 19 is the least).
WRITER_NICENESS = 10


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: a nice value is per thread)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, WRITER_NICENESS)


@dataclass(frozen=True)
class TierStats:
    name: str  # MEM or DISK
    capacity: int  # the quota, in bytes; 0 when the tier is off
    used: int  # bytes held, plus bytes reserved for disk writes in progress
    blocks: int


@dataclass
class StoreCounters:
    """Monotonic counts, for metrics."""

    evictions: dict[str, int] = field(default_factory=lambda: {MEM: 0, DISK: 0})
    corrupt_blocks: int = 0
    disk_write_errors: int = 0


class _Lru:
    """Block sizes in recency order (least recent first), within a byte quota."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.reserved = 0  # bytes promised to writes in progress
        self.sizes: OrderedDict[BlockId, int] = OrderedDict()

    def fits(self, size: int) -> bool:
        return self.capacity > 0 and size <= self.capacity

    def touch(self, block: BlockId) -> None:
        if block in self.sizes:
            self.sizes.move_to_end(block)

    def add(self, block: BlockId, size: int) -> None:
        self.discard(block)
        self.sizes[block] = size
        self.used += size

    def discard(self, block: BlockId) -> bool:
        size = self.sizes.pop(block, None)
        if size is None:
            return False
        self.used -= size
        return True

    def victims(self, size: int, pinned: Container[BlockId]) -> list[BlockId] | None:
        """The LRU unpinned blocks to drop so `size` more bytes fit; None if pins forbid."""
        excess = self.used + self.reserved + size - self.capacity
        chosen: list[BlockId] = []
        for block, held in self.sizes.items():
            if excess <= 0:
                break
            if block not in pinned:
                chosen.append(block)
                excess -= held
        return chosen if excess <= 0 else None


class BlockStore:
    """Blocks in memory and on disk, for one worker."""

    def __init__(self, cache_dir: Path, mem_quota: int, disk_quota: int) -> None:
        if mem_quota < 0 or disk_quota < 0:
            raise ValueError(f"quotas must not be negative: {mem_quota}, {disk_quota}")
        self._root = disk_tier.blocks_root(cache_dir)
        self._mem = _Lru(mem_quota)
        self._data: dict[BlockId, BlockData] = {}
        self._disk = _Lru(disk_quota)
        self._writing: dict[BlockId, asyncio.Event] = {}
        self._deleting: dict[BlockId, asyncio.Event] = {}
        self._pins: Counter[BlockId] = Counter()
        self._added: dict[BlockId, int] = {}
        self._removed: set[BlockId] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writer = ThreadPoolExecutor(1, "disk-writer", initializer=_lower_priority)
        self.counters = StoreCounters()
        # Called when the set of held blocks changes (the worker reports it soon).
        self.on_change: Callable[[], None] = lambda: None

    async def open(self) -> None:
        """Rebuild the disk index from the block files' headers."""
        if not self._disk.capacity:
            log.info("disk tier off (quota 0); memory quota %s", format_size(self._mem.capacity))
            return
        scan = await asyncio.to_thread(disk_tier.scan, self._root)
        for found in scan.found:
            was_held = self.contains(found.block)
            self._disk.add(found.block, found.length)
            self._changed(found.block, was_held)
        self.counters.corrupt_blocks += scan.corrupt
        log.info(
            "disk tier: %d blocks (%s) found in %s; %d broken and %d temp files removed",
            len(scan.found),
            format_size(self._disk.used),
            self._root,
            scan.corrupt,
            scan.temps,
        )
        # The quota may have shrunk since the files were written.
        over = self._disk.victims(0, self._pins) or []
        if over:
            log.info("disk tier: evicting %d blocks to fit the quota", len(over))
            self.counters.evictions[DISK] += len(over)
            await self._drop_disk(over)

    async def close(self) -> None:
        """Wait for the disk writes under way (each is atomic: a file or none)."""
        await asyncio.to_thread(self._writer.shutdown, wait=True)

    async def get(self, block: BlockId) -> BlockData | None:
        """The block's bytes, from memory or verified from disk; None on a miss."""
        data = self._data.get(block)
        if data is not None:
            self._mem.touch(block)
            self._disk.touch(block)  # a hot block keeps its disk copy too
            return data
        if block not in self._disk.sizes:
            return None
        self._disk.touch(block)
        with self.pin(block):
            try:
                read = await asyncio.to_thread(disk_tier.read, self._path(block), block)
            except disk_tier.CorruptBlock as exc:
                # Another reader of the same file may have dropped it already.
                if block in self._disk.sizes:
                    log.warning("disk tier: dropping corrupt block %s: %s", block, exc)
                    self.counters.corrupt_blocks += 1
                    await self._drop_disk([block])
                return None
        self._admit_mem(block, read)
        return read

    async def put(self, block: BlockId, data: BlockData) -> bool:
        """Cache `block` in every tier it fits; False if none holds it afterwards."""
        self._admit_mem(block, data)
        await self._shielded(self._write_disk(block, data))
        # Asked after the write: a concurrent put may have evicted the memory copy.
        if self.contains(block):
            return True
        size = len(data)
        if not self._mem.fits(size) and not self._disk.fits(size):
            log.warning(
                "block %s of %s fits in no tier (memory quota %s, disk quota %s): "
                "serving it uncached; set quotas of at least one block",
                block,
                format_size(size),
                format_size(self._mem.capacity),
                format_size(self._disk.capacity),
            )
        else:
            log.warning(
                "block %s of %s not cached: pinned blocks leave no room, or the disk write failed",
                block,
                format_size(size),
            )
        return False

    def contains(self, block: BlockId) -> bool:
        return block in self._data or block in self._disk.sizes

    def in_memory(self, block: BlockId) -> bool:
        """Whether a `get` now would be served from memory (for hit-source metrics)."""
        return block in self._data

    def length(self, block: BlockId) -> int | None:
        size = self._mem.sizes.get(block)
        return size if size is not None else self._disk.sizes.get(block)

    @contextlib.contextmanager
    def pin(self, block: BlockId) -> Iterator[None]:
        """Keep `block` from eviction in every tier while the context is open."""
        self._pins[block] += 1
        try:
            yield
        finally:
            self._pins[block] -= 1
            if not self._pins[block]:
                del self._pins[block]

    def stats(self) -> list[TierStats]:
        mem, disk = self._mem, self._disk
        return [
            TierStats(MEM, mem.capacity, mem.used, len(mem.sizes)),
            TierStats(DISK, disk.capacity, disk.used + disk.reserved, len(disk.sizes)),
        ]

    def held(self) -> list[tuple[BlockId, int]]:
        return list({**self._disk.sizes, **self._mem.sizes}.items())

    def drain_changes(self) -> tuple[list[tuple[BlockId, int]], list[BlockId]]:
        """(blocks now held, blocks no longer held) since the last drain."""
        added, removed = list(self._added.items()), list(self._removed)
        self._added, self._removed = {}, set()
        return added, removed

    # -- memory tier ------------------------------------------------------------------

    def _admit_mem(self, block: BlockId, data: BlockData) -> bool:
        if block in self._data:
            self._mem.touch(block)
            return True
        if not self._mem.fits(len(data)):
            return False
        victims = self._mem.victims(len(data), self._pins)
        if victims is None:
            return False
        for victim in victims:
            del self._data[victim]
            self._mem.discard(victim)
            self.counters.evictions[MEM] += 1
            self._changed(victim, was_held=True)
        was_held = self.contains(block)
        self._data[block] = data
        self._mem.add(block, len(data))
        self._changed(block, was_held)
        return True

    # -- disk tier --------------------------------------------------------------------

    async def _write_disk(self, block: BlockId, data: BlockData) -> bool:
        size = len(data)
        if not self._disk.fits(size):
            return False
        while (deleting := self._deleting.get(block)) is not None:
            await deleting.wait()
        if (writing := self._writing.get(block)) is not None:
            await writing.wait()
            return block in self._disk.sizes
        if block in self._disk.sizes:
            self._disk.touch(block)
            return True
        victims = self._disk.victims(size, self._pins)
        if victims is None:
            return False
        self.counters.evictions[DISK] += len(victims)
        done = self._writing[block] = asyncio.Event()
        self._disk.reserved += size
        try:
            if victims:
                await self._drop_disk(victims)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._writer, disk_tier.write, self._path(block), block, data
                )
            except OSError as exc:
                self.counters.disk_write_errors += 1
                log.warning(
                    "disk tier: cannot write block %s (%s): %s; it stays in memory only",
                    block,
                    format_size(size),
                    exc,
                )
                return False
            was_held = self.contains(block)
            self._disk.add(block, size)
            self._changed(block, was_held)
            return True
        finally:
            self._disk.reserved -= size
            del self._writing[block]
            done.set()

    def _drop_disk(self, blocks: list[BlockId]) -> Awaitable[None]:
        """Drop `blocks` from the disk index now; await the result to see their files
        deleted (the deletion finishes even if the awaiting caller is cancelled)."""
        done = asyncio.Event()
        for block in blocks:
            was_held = self.contains(block)
            self._disk.discard(block)
            self._changed(block, was_held)
            self._deleting[block] = done
        return self._shielded(self._delete_files(blocks, done))

    async def _delete_files(self, blocks: list[BlockId], done: asyncio.Event) -> None:
        try:
            if blocks:
                await asyncio.to_thread(disk_tier.remove, [self._path(b) for b in blocks])
        finally:
            for block in blocks:
                if self._deleting.get(block) is done:
                    del self._deleting[block]
            done.set()

    def _path(self, block: BlockId) -> Path:
        return disk_tier.block_path(self._root, block)

    # -- bookkeeping ------------------------------------------------------------------

    def _changed(self, block: BlockId, was_held: bool) -> None:
        """Record a change of `block`'s held state as a net change since the last drain."""
        now_held = self.contains(block)
        if now_held != was_held:
            self.on_change()
        if now_held and not was_held:
            if block in self._removed:
                self._removed.discard(block)
            else:
                self._added[block] = self.length(block) or 0
        elif was_held and not now_held and self._added.pop(block, None) is None:
            self._removed.add(block)

    def _shielded(self, work: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
        """Run `work` to the end even if the caller is cancelled (it keeps the index
        and the files in step)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # the loop holds tasks weakly
        task.add_done_callback(self._tasks.discard)
        return asyncio.shield(task)
