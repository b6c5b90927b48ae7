"""Which worker fills a block: weighted rendezvous hashing.

Each (block, worker) pair gets a pseudo-random score from a hash, scaled by the
worker's weight; workers are ranked by score and the first one fills. The ranking
depends only on the block's name and the set of workers with their weights, so
every master and every concurrent caller computes the same answer without talking
to each other, and a burst of readers of one block converges on one fill. When a
worker joins or leaves, only the blocks it wins or held move (the property that
makes rendezvous hashing better than modulo placement).

Weights follow free capacity, rounded down to a power of two: a worker with twice
the free space takes about twice the new blocks, and the rounding keeps placement
stable while free space drifts a little with every block cached. Where it crosses a
power of two, `RecentFillers` keeps the answer for a block whose fill is under way.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

# A worker with less free space than this still gets a little weight: eviction
# makes room, and a full cluster must still place blocks somewhere.
MIN_WEIGHT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    worker_id: str
    address: str
    free_bytes: int


def _weight(free_bytes: int) -> float:
    return float(2 ** int(math.log2(max(free_bytes, MIN_WEIGHT))))


def _score(block_name: str, candidate: Candidate) -> float:
    digest = hashlib.blake2b(f"{block_name}\0{candidate.worker_id}".encode(), digest_size=8)
    # A uniform draw in (0, 1), never 0 or 1 so the logarithm is finite and negative.
    uniform = (int.from_bytes(digest.digest(), "big") + 0.5) / 2**64
    return -_weight(candidate.free_bytes) / math.log(uniform)


def rank(block_name: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """`candidates`, the one that should fill `block_name` first."""
    return sorted(candidates, key=lambda c: _score(block_name, c), reverse=True)


class RecentFillers:
    """The filler first named for each cold block, for `seconds`.

    Weights drift as workers fill up (a worker whose free space was exactly a power of
    two drops a class with its first block), and a block is reported only after its
    fill. Readers that arrive in between must still be sent to the worker already
    filling it, or a second worker reads the same bytes from the origin. The memory is
    each master's own: readers that ask different masters while weights drift may
    still be sent to two workers, which costs one extra origin read of that block.
    """

    def __init__(self, seconds: float = 60.0, size: int = 100_000) -> None:
        self._seconds = seconds
        self._size = size
        self._chosen: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def order(self, block_name: str, ranked: list[str]) -> list[str]:
        """`ranked` (addresses, best first) with this block's earlier choice first."""
        now = time.monotonic()
        earlier = self._chosen.get(block_name)
        if earlier and earlier[1] > now and earlier[0] in ranked:
            return [earlier[0], *(a for a in ranked if a != earlier[0])]
        if ranked:
            self._chosen[block_name] = (ranked[0], now + self._seconds)
            self._chosen.move_to_end(block_name)
            while len(self._chosen) > self._size:
                self._chosen.popitem(last=False)
        return ranked

    def forget(self, block_name: str) -> None:
        """The block is held somewhere now: its holders answer for it."""
        self._chosen.pop(block_name, None)
