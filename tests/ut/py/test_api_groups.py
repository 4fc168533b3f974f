"""Group tasks: one graph node run on N chips at once."""
import os

import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(chips=4, sub_workers=1, window=32)

    @w.kernel
    def allreduce(args, chip):
        block, partials, total, who = (args.tensor(i) for i in range(4))
        partials[chip.group_rank] = block.sum()
        chip.barrier()
        total[chip.group_rank] = partials.sum()
        who[chip.group_rank] = [chip.chip_id, chip.group_size, os.getpid()]
        chip.barrier()

    @w.kernel
    def one_fails(args, chip):
        if chip.group_rank == 2:
            raise ValueError("member 2 fails")
        chip.barrier()

    @w.sub
    def check(args):
        args.tensor(1)[...] = args.tensor(0)

    w.init()
    w.h = dict(allreduce=allreduce, one_fails=one_fails, check=check)
    return w


def group_args(w, n):
    blocks = [w.share(np.full(5, r + 1.0)) for r in range(n)]
    partials, total = w.alloc(n, np.float64), w.alloc(n, np.float64)
    who = w.alloc((n, 3), np.int64)
    return blocks, partials, total, who, [tf.TaskArgs().input(blocks[r]).inout(partials).inout(total).inout(who)
                                          for r in range(n)]


@pytest.mark.timeout(60)
def test_allreduce_on_four_chips_with_barrier(w):
    blocks, partials, total, who, args = group_args(w, 4)
    t = w.submit_group(w.h["allreduce"], args)
    after = w.alloc(4, np.float64)
    w.submit_sub(w.h["check"], tf.TaskArgs().input(total).output(after))  # depends on the group
    w.drain()
    assert t.state in ("completed", "consumed")
    assert np.array_equal(partials, [5, 10, 15, 20]) and np.all(total == 50) and np.all(after == 50)
    assert sorted(who[:, 0]) == [0, 1, 2, 3] and np.all(who[:, 1] == 4)
    assert len(set(who[:, 2])) == 4  # four distinct processes at once
    pids = w.pids()
    assert sorted(who[:, 2]) == sorted(pids[f"chip {i}"] for i in range(4))


@pytest.mark.timeout(60)
def test_explicit_workers_place_members(w):
    blocks, partials, total, who, args = group_args(w, 2)
    w.submit_group(w.h["allreduce"], args, workers=[3, 1])
    w.drain()
    assert list(who[:, 0]) == [3, 1] and np.all(total == 15)


@pytest.mark.timeout(60)
def test_member_failure_fails_the_group_and_releases_the_barrier(w):
    t = w.submit_group(w.h["one_fails"], [tf.TaskArgs() for _ in range(4)])
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    fs = e.value.failures
    assert [f.task_id for f in fs] == [t.id]
    assert fs[0].kind == "exception" and "member 2 fails" in fs[0].message
    # The chips are free again: another group runs.
    blocks, partials, total, who, args = group_args(w, 4)
    w.submit_group(w.h["allreduce"], args)
    w.drain()
    assert np.all(total == 50)


@pytest.mark.timeout(60)
def test_groups_and_single_chip_work_interleave(w):
    xs = []
    for i in range(6):
        blocks, partials, total, who, args = group_args(w, 2 + i % 3)
        w.submit_group(w.h["allreduce"], args)
        xs.append((total, (2 + i % 3) * (3 + i % 3) / 2 * 5))
    w.drain()
    for total, expected in xs:
        assert np.all(total == expected)
