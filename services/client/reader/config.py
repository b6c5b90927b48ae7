"""The reader's knobs: `ReaderConfig`, and the defaults and timings behind it with
why each is so (how they combine: the design note, in `reservoir.client.reader`)."""

from __future__ import annotations

from dataclasses import dataclass

from reservoir.errors import InvalidArgument

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
