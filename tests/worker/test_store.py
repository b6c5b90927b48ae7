"""The worker's block store, on real files: tiers, LRU, pins, checksums, restarts, faults."""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import mmap
import os
import random
import shutil
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from reservoir.blocks import BlockId
from reservoir.worker import disk_tier
from reservoir.worker.store import BlockStore, TierStats

SIZE = 1000  # bytes per test block: quotas below are written in blocks


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def blk(i: int) -> BlockId:
    return BlockId("ds", "dir/file.bin", "etag-1", i)


def payload(i: int, size: int = SIZE) -> bytes:
    return random.Random(i).randbytes(size)


def block_files(cache: Path) -> set[Path]:
    return set((cache / "blocks").rglob("*.blk"))


def path_of(cache: Path, i: int) -> Path:
    return disk_tier.block_path(cache / "blocks", blk(i))


async def opened(cache: Path, mem: int, disk: int) -> BlockStore:
    store = BlockStore(cache, mem_quota=mem * SIZE, disk_quota=disk * SIZE)
    await store.open()
    return store


def test_round_trip_through_both_tiers(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=10, disk=10)
        for i in range(3):
            assert await store.put(blk(i), payload(i))
        for i in range(3):
            assert store.in_memory(blk(i))
            assert await store.get(blk(i)) == payload(i)
            assert store.length(blk(i)) == SIZE
        assert await store.get(blk(9)) is None
        assert store.stats() == [
            TierStats("MEM", 10 * SIZE, 3 * SIZE, 3),
            TierStats("DISK", 10 * SIZE, 3 * SIZE, 3),
        ]
        # A store with no memory tier reads the same bytes back from the files.
        disk_only = await opened(tmp_path, mem=0, disk=10)
        for i in range(3):
            data = await disk_only.get(blk(i))
            assert data is not None
            assert hashlib.sha256(data).digest() == hashlib.sha256(payload(i)).digest()
            assert not disk_only.in_memory(blk(i))

    run(main())
    assert block_files(tmp_path) == {path_of(tmp_path, i) for i in range(3)}


def test_file_layout_is_the_documented_format(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=1)
        assert await store.put(blk(0), payload(0))

    run(main())
    path = path_of(tmp_path, 0)
    assert path.parent.parent == tmp_path / "blocks"
    assert path.name == f"{blk(0).name}.blk" and len(path.parent.name) == 2
    raw = path.read_bytes()
    magic, version, header_len = struct.unpack(">4sHI", raw[:10])
    assert (magic, version) == (b"RSVB", disk_tier.FORMAT_VERSION)
    data_at = -(-(10 + header_len) // 4096) * 4096  # the next page boundary
    assert raw[10 + header_len : data_at] == bytes(data_at - 10 - header_len)
    assert raw[data_at:] == payload(0)
    assert hashlib.sha256(payload(0)).hexdigest().encode() in raw[10 : 10 + header_len]


def resident_pages(path: Path) -> list[bool]:
    """Which pages of `path` are in the page cache (mincore(2) of a private mapping,
    which faults nothing in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    pages = -(-len(m) // mmap.PAGESIZE)
    vector = ctypes.create_string_buffer(pages)
    mapped = (ctypes.c_char * len(m)).from_buffer(m)
    try:
        assert libc.mincore(ctypes.addressof(mapped), len(m), vector) == 0, ctypes.get_errno()
    finally:
        del mapped
        m.close()
    return [bool(byte & 1) for byte in vector.raw]


@pytest.mark.parametrize("size", [1, 4096, 3 * 4096 + 5, 2 * 1024 * 1024 + 1])
@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_page_aligned_blocks_are_written_direct_and_read_back(
    tmp_path: Path, size: int, where: str
) -> None:
    # A fill's buffer is an mmap: written with O_DIRECT on a disk, and with ordinary
    # writes on tmpfs, which refuses O_DIRECT. Either way the same file comes back.
    root = tmp_path if where == "disk" else Path("/dev/shm") / tmp_path.name
    try:
        data = random.Random(size).randbytes(size)
        buffer = mmap.mmap(-1, size)
        buffer[:] = data
        path = disk_tier.block_path(root, blk(0))
        disk_tier.write(path, blk(0), buffer)
        if where == "disk":  # past the header page, nothing went into the page cache
            assert resident_pages(path)[1:] == [False] * -(-size // 4096)
        assert disk_tier.read(path, blk(0)) == data
        assert path.stat().st_size == 4096 + size
        assert [f.length for f in disk_tier.scan(root).found] == [size]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_memory_eviction_keeps_the_disk_copy(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=2, disk=10)
        for i in range(4):
            assert await store.put(blk(i), payload(i))
        assert [store.in_memory(blk(i)) for i in range(4)] == [False, False, True, True]
        assert store.counters.evictions == {"MEM": 2, "DISK": 0}
        # Evicted from memory, still held on disk: served with the right bytes, promoted.
        assert await store.get(blk(0)) == payload(0)
        assert store.in_memory(blk(0)) and not store.in_memory(blk(2))
        assert sorted(b.index for b, _ in store.held()) == [0, 1, 2, 3]
        added, removed = store.drain_changes()
        assert sorted(b.index for b, _ in added) == [0, 1, 2, 3] and removed == []
        assert store.stats()[0] == TierStats("MEM", 2 * SIZE, 2 * SIZE, 2)

    run(main())


def test_disk_eviction_is_lru_deletes_files_and_reports_removals(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=2)
        for i in range(2):
            assert await store.put(blk(i), payload(i))
        assert store.drain_changes() == ([(blk(0), SIZE), (blk(1), SIZE)], [])
        assert await store.get(blk(0)) == payload(0)  # now block 1 is the LRU one
        assert await store.put(blk(2), payload(2))
        assert block_files(tmp_path) == {path_of(tmp_path, 0), path_of(tmp_path, 2)}
        assert store.drain_changes() == ([(blk(2), SIZE)], [blk(1)])
        assert await store.get(blk(1)) is None
        assert store.counters.evictions["DISK"] == 1
        assert store.stats()[1] == TierStats("DISK", 2 * SIZE, 2 * SIZE, 2)

    run(main())


def test_pinned_blocks_are_never_evicted(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=2, disk=2)
        with store.pin(blk(0)), store.pin(blk(1)):
            for i in range(2):
                assert await store.put(blk(i), payload(i))
            assert not await store.put(blk(2), payload(2))
            assert not store.contains(blk(2))
            assert block_files(tmp_path) == {path_of(tmp_path, 0), path_of(tmp_path, 1)}
        with store.pin(blk(0)):
            with store.pin(blk(0)):  # reentrant: the outer pin still holds
                pass
            assert await store.put(blk(2), payload(2))
        assert store.contains(blk(0)) and not store.contains(blk(1))
        assert store.counters.evictions == {"MEM": 1, "DISK": 1}

    run(main())


def test_a_restarted_store_serves_its_disk_tier(tmp_path: Path) -> None:
    async def main() -> None:
        first = await opened(tmp_path, mem=10, disk=10)
        for i in range(4):
            assert await first.put(blk(i), payload(i))
        # LRU order after a restart follows mtime: make block 2 the oldest, then 0.
        for age, i in enumerate([2, 0, 3, 1]):
            os.utime(path_of(tmp_path, i), ns=(10**18 + age * 10**9,) * 2)

        second = await opened(tmp_path, mem=10, disk=4)
        assert sorted(second.held(), key=lambda h: h[0].index) == [(blk(i), SIZE) for i in range(4)]
        added, removed = second.drain_changes()
        assert sorted(b.index for b, _ in added) == [0, 1, 2, 3] and removed == []
        assert await second.get(blk(1)) == payload(1)
        assert await second.put(blk(4), payload(4))
        assert not second.contains(blk(2)) and second.contains(blk(0))

        # A smaller quota at start evicts the least recently used down to it.
        third = await opened(tmp_path, mem=0, disk=2)
        assert {b.index for b, _ in third.held()} == {1, 4}
        assert block_files(tmp_path) == {path_of(tmp_path, 1), path_of(tmp_path, 4)}
        for i in (1, 4):
            assert await third.get(blk(i)) == payload(i)

    run(main())


def _flip_data_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-SIZE // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"XXXX" + path.read_bytes()[4:])


def _unknown_version(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:4] + struct.pack(">H", 99) + raw[6:])


def _garbage_header(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:10] + b"{" * (len(raw) - 10))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "flipped data byte": _flip_data_byte,
    "truncated": _truncate,
    "bad magic": _bad_magic,
    "unknown version": _unknown_version,
    "garbage header": _garbage_header,
    "empty": _empty,
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_block_file_is_dropped_on_read_never_served(
    tmp_path: Path, corrupt: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=10)
        for i in range(2):
            assert await store.put(blk(i), payload(i))
        store.drain_changes()
        corrupt(path_of(tmp_path, 0))
        with caplog.at_level(logging.WARNING):
            assert await store.get(blk(0)) is None
        assert "corrupt block" in caplog.text
        assert not path_of(tmp_path, 0).exists() and not store.contains(blk(0))
        assert store.counters.corrupt_blocks == 1
        assert store.drain_changes() == ([], [blk(0)])
        assert await store.get(blk(1)) == payload(1)
        # Fetched again, it is stored again.
        assert await store.put(blk(0), payload(0))
        assert await store.get(blk(0)) == payload(0)

    run(main())


@pytest.mark.parametrize(
    "corrupt",
    [_truncate, _bad_magic, _unknown_version, _garbage_header],
    ids=["truncated", "bad magic", "unknown version", "garbage header"],
)
def test_a_broken_block_file_is_dropped_at_start(
    tmp_path: Path, corrupt: Callable[[Path], None]
) -> None:
    async def main() -> None:
        first = await opened(tmp_path, mem=0, disk=10)
        for i in range(2):
            assert await first.put(blk(i), payload(i))
        corrupt(path_of(tmp_path, 0))
        second = await opened(tmp_path, mem=0, disk=10)
        assert second.held() == [(blk(1), SIZE)]
        assert second.counters.corrupt_blocks == 1
        assert block_files(tmp_path) == {path_of(tmp_path, 1)}

    run(main())


def test_a_file_holding_another_block_is_not_served(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=10)
        for i in range(2):
            assert await store.put(blk(i), payload(i))
        shutil.copyfile(path_of(tmp_path, 1), path_of(tmp_path, 0))
        assert await store.get(blk(0)) is None
        assert store.counters.corrupt_blocks == 1
        # At start the same file is caught by its path.
        shutil.copyfile(path_of(tmp_path, 1), path_of(tmp_path, 0))
        restarted = await opened(tmp_path, mem=0, disk=10)
        assert restarted.held() == [(blk(1), SIZE)]

    run(main())


def test_leftover_temp_files_are_removed_at_start(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=10)
        assert await store.put(blk(0), payload(0))
        temp = path_of(tmp_path, 0).with_name("half-written.blk.1234.tmp")
        temp.write_bytes(b"RSVB")
        await opened(tmp_path, mem=0, disk=10)
        assert not temp.exists() and path_of(tmp_path, 0).exists()

    run(main())


def test_a_block_larger_than_both_quotas_is_not_cached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        store = BlockStore(tmp_path, mem_quota=SIZE - 1, disk_quota=SIZE - 1)
        await store.open()
        with caplog.at_level(logging.WARNING):
            assert not await store.put(blk(0), payload(0))
        assert "fits in no tier" in caplog.text and "quota" in caplog.text
        assert store.held() == [] and store.drain_changes() == ([], [])
        assert block_files(tmp_path) == set()
        assert await store.get(blk(0)) is None

    run(main())


def test_a_block_skips_a_tier_too_small_for_it(tmp_path: Path) -> None:
    async def main() -> None:
        small_mem = await opened(tmp_path / "a", mem=1, disk=10)
        assert await small_mem.put(blk(0), payload(0, 2 * SIZE))
        assert not small_mem.in_memory(blk(0)) and small_mem.length(blk(0)) == 2 * SIZE
        assert await small_mem.get(blk(0)) == payload(0, 2 * SIZE)
        assert not small_mem.in_memory(blk(0))  # too big to promote: read from disk each time

        small_disk = await opened(tmp_path / "b", mem=10, disk=1)
        assert await small_disk.put(blk(0), payload(0, 2 * SIZE))
        assert small_disk.in_memory(blk(0)) and block_files(tmp_path / "b") == set()

    run(main())


def test_a_disk_tier_with_quota_zero_is_off(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=10, disk=0)
        assert await store.put(blk(0), payload(0))
        assert await store.get(blk(0)) == payload(0)

    run(main())
    assert not (tmp_path / "blocks").exists()


def test_a_failed_disk_write_keeps_the_memory_copy(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=10, disk=10)
        # A file where the block's directory should be: the write fails like a full disk.
        path_of(tmp_path, 0).parent.parent.mkdir(parents=True, exist_ok=True)
        path_of(tmp_path, 0).parent.write_bytes(b"")
        assert await store.put(blk(0), payload(0))
        assert store.counters.disk_write_errors == 1
        assert store.in_memory(blk(0)) and await store.get(blk(0)) == payload(0)
        assert store.stats()[1] == TierStats("DISK", 10 * SIZE, 0, 0)
        assert store.drain_changes() == ([(blk(0), SIZE)], [])

        no_mem = await opened(tmp_path, mem=0, disk=10)
        assert not await no_mem.put(blk(0), payload(0))
        assert no_mem.counters.disk_write_errors == 1 and no_mem.held() == []

    run(main())
    assert list((tmp_path / "blocks").rglob("*.tmp")) == []


def test_drain_changes_reports_the_net_change(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=1, disk=0)
        assert await store.put(blk(0), payload(0))
        assert await store.put(blk(1), payload(1))  # evicts block 0 before any drain
        assert store.drain_changes() == ([(blk(1), SIZE)], [])
        assert store.drain_changes() == ([], [])
        assert await store.put(blk(0), payload(0))  # evicts 1
        assert await store.put(blk(1), payload(1))  # evicts 0: 1 is back, 0 came and went
        assert store.drain_changes() == ([], [])

    run(main())


def test_concurrent_puts_and_gets_keep_index_and_files_in_step(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=3, disk=5)
        blocks = [i % 12 for i in range(60)]

        async def one(i: int) -> None:
            await store.put(blk(i), payload(i))
            data = await store.get(blk(i))
            assert data is None or data == payload(i)

        await asyncio.gather(*(one(i) for i in blocks))
        mem, disk = store.stats()
        assert mem.used <= mem.capacity and disk.used <= disk.capacity
        assert block_files(tmp_path) == {path_of(tmp_path, b.index) for b, _ in store.held()}
        for b, _ in store.held():
            assert await store.get(b) == payload(b.index)
        assert store.counters.corrupt_blocks == 0

    run(main())


def test_a_cancelled_put_still_finishes_its_disk_write(tmp_path: Path) -> None:
    async def main() -> None:
        store = await opened(tmp_path, mem=0, disk=10)
        task = asyncio.create_task(store.put(blk(0), payload(0)))
        await asyncio.sleep(0)  # let it start the write
        task.cancel()
        for _ in range(500):
            if store.contains(blk(0)):
                break
            await asyncio.sleep(0.01)
        assert await store.get(blk(0)) == payload(0)
        assert store.stats()[1] == TierStats("DISK", 10 * SIZE, SIZE, 1)

    run(main())


def test_negative_quotas_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlockStore(tmp_path, mem_quota=-1, disk_quota=0)
