"""Weighted rendezvous placement: stable, proportional to free space, minimal movement."""

from __future__ import annotations

from collections import Counter

from reservoir.master.placement import Candidate, rank

GiB = 1024**3
BLOCKS = [f"ds-file-{i}" for i in range(4000)]


def winners(candidates: list[Candidate]) -> dict[str, str]:
    return {b: rank(b, candidates)[0].worker_id for b in BLOCKS}


def test_every_caller_computes_the_same_ranking_in_any_order() -> None:
    a, b, c = (Candidate(n, f"{n}:1", 8 * GiB) for n in "abc")
    for block in BLOCKS[:50]:
        assert rank(block, [a, b, c]) == rank(block, [c, a, b]) == rank(block, [b, c, a])


def test_equal_workers_share_blocks_evenly() -> None:
    counts = Counter(winners([Candidate(n, n, 8 * GiB) for n in "abcd"]).values())
    assert all(800 <= counts[n] <= 1200 for n in "abcd"), counts


def test_twice_the_free_space_takes_about_twice_the_blocks() -> None:
    counts = Counter(
        winners([Candidate("big", "big", 16 * GiB), Candidate("small", "s", 8 * GiB)]).values()
    )
    assert 1.7 <= counts["big"] / counts["small"] <= 2.3, counts


def test_a_leaving_worker_moves_only_its_own_blocks() -> None:
    four = [Candidate(n, n, 8 * GiB) for n in "abcd"]
    before = winners(four)
    after = winners([c for c in four if c.worker_id != "d"])
    moved = {b for b in BLOCKS if before[b] != after[b]}
    assert moved == {b for b in BLOCKS if before[b] == "d"}


def test_small_changes_in_free_space_do_not_move_blocks() -> None:
    before = winners([Candidate("a", "a", 9 * GiB), Candidate("b", "b", 10 * GiB)])
    after = winners(
        [Candidate("a", "a", 9 * GiB - 64 * 2**20), Candidate("b", "b", 10 * GiB + 2**20)]
    )
    assert before == after
