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
stable while free space drifts a little with every block cached.
"""

from __future__ import annotations

import hashlib
import math
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
