"""Schedule of the sequential loader: chunks, slot assignment, shuffling, ranks (pure logic, no files)."""

import pytest

from evframe.data.metadata import FileMetadata
from evframe.data.sequential import Chunk, assign_to_slots, plan_epoch, split_into_chunks


def _md(num_batches: int, delta_t: int = 10, num_tbins: int = 2, start_ts: int = 0, name: str = "r") -> FileMetadata:
    """A recording covering exactly ``num_batches`` batches of ``delta_t * num_tbins`` us."""
    return FileMetadata(name, start_ts + num_batches * delta_t * num_tbins, delta_t, num_tbins, start_ts=start_ts)


def test_file_metadata_repr_and_batches():
    md = FileMetadata("a/rec.h5", 10_000_000, 50_000, 3)
    assert repr(md) == ("FileMetadata object a/rec.h5\n    start_ts 0us delta_t 50000us, num_tbins 3, "
                        "total duration 10000000us\n")
    assert md.batch_duration == 150_000
    assert md.num_batches == 67  # ceil(10e6 / 150e3): the last batch runs past the end
    assert FileMetadata("x", 100, 10, 2, start_ts=30, max_duration=41).stop_ts == 71
    assert FileMetadata("x", 100, 10, 2, start_ts=30, max_duration=41).num_batches == 3  # [30, 71) / 20
    assert FileMetadata("x", 100, 10, 2, start_ts=120).num_batches == 0
    assert FileMetadata("x", 5, 1, 1) == FileMetadata("x", 5, 1, 1)
    with pytest.raises(ValueError, match="delta_t"):
        FileMetadata("x", 5, 0, 1)


def test_split_into_chunks():
    md = _md(7, start_ts=100)  # batch duration 20 us
    assert split_into_chunks(3, md, None) == [Chunk(3, 100, 7)]
    assert split_into_chunks(3, md, 3) == [Chunk(3, 100, 3), Chunk(3, 160, 3), Chunk(3, 220, 1)]
    assert split_into_chunks(3, md, 3, offset=2) == [Chunk(3, 100, 2), Chunk(3, 140, 3), Chunk(3, 200, 2)]
    assert split_into_chunks(0, md, 10, offset=9) == [Chunk(0, 100, 7)]
    assert split_into_chunks(0, _md(0), 2) == []


def test_assign_to_slots_greedy():
    chunks = [Chunk(i, 0, n) for i, n in enumerate([3, 2, 4, 1])]
    # slot 0 takes c0 (busy until 3), slot 1 c1 (until 2); slot 1 frees first and takes c2 (until 6), then slot 0 c3
    assert assign_to_slots(chunks, 2) == [[chunks[0], chunks[3]], [chunks[1], chunks[2]]]
    assert assign_to_slots(chunks, 1) == [chunks]
    assert assign_to_slots(chunks[:1], 3) == [[chunks[0]], [], []]


def test_plan_padding_and_no_padding():
    mds = [_md(3), _md(2)]
    plan = plan_epoch(mds, 2)
    assert plan.num_batches == 3
    assert [[c.file_index for c in s] for s in plan.streams] == [[0], [1]]
    assert plan_epoch(mds, 2, padding=False).num_batches == 2
    assert plan_epoch(mds, 1).num_batches == 5


def test_plan_ranks_disjoint_with_equal_lengths():
    mds = [_md(n, name=f"r{i}") for i, n in enumerate([5, 1, 2, 7, 3])]
    for shuffle in (False, True):
        plans = [plan_epoch(mds, 2, epoch=1, shuffle=shuffle, rank=r, world_size=2) for r in range(2)]
        files = [{c.file_index for s in p.streams for c in s} for p in plans]
        assert files[0].isdisjoint(files[1])
        assert files[0] | files[1] == set(range(5))
        assert plans[0].num_batches == plans[1].num_batches
        # each rank's batches cover its recordings exactly once
        for p, fs in zip(plans, files, strict=True):
            assert sum(c.num_batches for s in p.streams for c in s) == sum(mds[i].num_batches for i in fs)
    assert {c.file_index for s in plan_epoch(mds, 2, rank=0, world_size=2).streams for c in s} == {0, 2, 4}


def test_plan_shuffle_is_seeded_by_seed_and_epoch():
    mds = [_md(2, name=f"r{i}") for i in range(8)]

    def order(**kw):
        return [c.file_index for c in plan_epoch(mds, 1, shuffle=True, **kw).streams[0]]

    assert order(epoch=3, seed=1) == order(epoch=3, seed=1)
    orders = {tuple(order(epoch=e, seed=1)) for e in range(5)}
    assert len(orders) > 1
    assert sorted(order(epoch=0, seed=5)) == list(range(8))
    assert order(epoch=0) != order(epoch=0, seed=99) or order(epoch=1) != order(epoch=1, seed=99)


def test_plan_chunks_cover_every_batch_once_with_shuffle():
    mds = [_md(n, name=f"r{i}") for i, n in enumerate([9, 4, 6])]
    for epoch in range(4):
        plan = plan_epoch(mds, 2, epoch=epoch, shuffle=True, max_consecutive_batch=3)
        covered = sorted((c.file_index, c.start_ts + k * 20) for s in plan.streams for c in s
                         for k in range(c.num_batches))
        expected = sorted((i, k * 20) for i, md in enumerate(mds) for k in range(md.num_batches))
        assert covered == expected
        assert all(1 <= c.num_batches <= 3 for s in plan.streams for c in s)
