"""Weighted rendezvous placement: stable, proportional to free space, minimal movement."""

from __future__ import annotations

from collections import Counter

from reservoir.master.placement import Candidate, RecentFillers, rank

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


def test_a_fill_under_way_keeps_its_worker_when_weights_cross_a_power_of_two() -> None:
    # Both start with exactly 8 GiB free; "a" caches its first block and drops a class.
    start = [Candidate("a", "a", 8 * GiB), Candidate("b", "b", 8 * GiB)]
    later = [Candidate("a", "a", 8 * GiB - 64 * 2**20), Candidate("b", "b", 8 * GiB)]
    flipped = [b for b in BLOCKS if rank(b, start)[0] != rank(b, later)[0]]
    assert flipped, "the drift this guards against happens"
    fillers = RecentFillers()
    for block in flipped:
        first = fillers.order(block, [c.address for c in rank(block, start)])
        again = fillers.order(block, [c.address for c in rank(block, later)])
        assert again[0] == first[0] and sorted(again) == ["a", "b"]


def test_a_remembered_filler_gives_way_when_it_leaves_expires_or_the_block_is_held() -> None:
    fillers = RecentFillers(seconds=60)
    assert fillers.order("blk", ["a", "b"]) == ["a", "b"]
    assert fillers.order("blk", ["b", "a"]) == ["a", "b"]
    assert fillers.order("blk", ["b", "c"]) == ["b", "c"], "a left: the ranking decides"
    fillers.forget("blk")
    assert fillers.order("blk", ["c", "b"]) == ["c", "b"]
    expired = RecentFillers(seconds=0)
    expired.order("blk", ["a", "b"])
    assert expired.order("blk", ["b", "a"]) == ["b", "a"]
