"""Group tasks (contract section 4): one DAG node run on N chips at once;
members see group_rank/group_size/chip_id and synchronise with barrier()."""
import os
import time

import numpy as np
import pytest

import tierflow as tf


def allreduce(args, chip):
    """Member r: tensor 0 its block (input), tensor 1 the shared partials,
    tensor 2 the result row of this member, tensor 3 its (rank, size, chip,
    pid) record. Sum-allreduce with two barriers."""
    block, partials, result, info = (args.tensor(i) for i in range(4))
    partials[chip.group_rank] = block.sum()
    chip.barrier()  # every partial is written
    result[...] = partials.sum()
    info[:] = [chip.group_rank, chip.group_size, chip.chip_id, os.getpid()]
    chip.barrier()  # nobody leaves before every member has read the partials


def member_raises(args, chip):
    """Rank `scalar(0)` raises; the others wait in barrier() and record what
    they saw in tensor 0 (no_dep): 1 = released with RuntimeError."""
    seen = args.tensor(0)
    if chip.group_rank == args.scalar(0):
        time.sleep(0.1)
        raise ValueError(f"member {chip.group_rank} gives up")
    try:
        chip.barrier()
    except RuntimeError as e:
        seen[chip.group_rank] = 1 if "barrier broken" in str(e) else 2
        raise
    seen[chip.group_rank] = 3  # barrier passed: must not happen


def ranks(args, chip):
    args.tensor(0)[:] = [chip.group_rank, chip.group_size, chip.chip_id]


def single(args, chip):
    args.tensor(0)[:] = [chip.group_rank, chip.group_size, chip.chip_id]
    chip.barrier()  # a no-op outside a group


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=4, sub_workers=1, window=64)
    w.h = {name: w.register_kernel(fn) for name, fn in
           [("allreduce", allreduce), ("raises", member_raises), ("ranks", ranks), ("single", single)]}
    w.h["copy"] = w.register_sub(lambda a: a.tensor(1).__setitem__(Ellipsis, a.tensor(0)))
    w.init()
    return w


def allreduce_args(w, n):
    blocks = [w.share(np.arange(10, dtype=np.float64) + 100 * r) for r in range(n)]
    partials = w.alloc(n, np.float64)
    results = w.alloc((n, 1), np.float64)
    info = w.alloc((n, 4), np.int64)
    args = [tf.TaskArgs().input(blocks[r]).inout(partials).output(results[r]).output(info[r]) for r in range(n)]
    expected = sum(b.sum() for b in blocks)
    return args, partials, results, info, expected


@pytest.mark.timeout(60)
def test_allreduce_on_four_chips(w):
    args, partials, results, info, expected = allreduce_args(w, 4)
    t = w.submit_group(w.h["allreduce"], args)
    t.wait(timeout=30)
    assert np.all(results == expected)
    assert list(info[:, 0]) == [0, 1, 2, 3] and np.all(info[:, 1] == 4)
    assert sorted(info[:, 2]) == [0, 1, 2, 3]
    pids = w.pids()
    for r in range(4):  # member r really ran in the process of the chip it reports
        assert info[r, 3] == pids[f"chip {info[r, 2]}"]
    w.drain()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0], [1], [3, 1, 2]])
def test_workers_list_places_member_i_on_chip_workers_i(w, workers):
    out = w.alloc((len(workers), 3), np.int64)
    w.submit_group(w.h["ranks"], [tf.TaskArgs().output(out[i]) for i in range(len(workers))], workers=workers)
    w.drain()
    assert list(out[:, 0]) == list(range(len(workers)))
    assert np.all(out[:, 1] == len(workers))
    assert list(out[:, 2]) == workers


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_groups_of_every_size(w, n):
    args, partials, results, info, expected = allreduce_args(w, n)
    w.submit_group(w.h["allreduce"], args)
    w.drain()
    assert np.all(results == expected) and np.all(info[:, 1] == n)
    assert len(set(info[:, 2])) == n  # n distinct chips


@pytest.mark.timeout(60)
def test_single_chip_task_is_rank_0_of_1(w):
    out = w.alloc(3, np.int64)
    w.submit_next_level(w.h["single"], tf.TaskArgs().output(out), worker=2)
    w.drain()
    assert list(out) == [0, 1, 2]


@pytest.mark.timeout(60)
def test_group_is_one_node_that_dependents_wait_for(w):
    args, partials, results, info, expected = allreduce_args(w, 4)
    w.submit_group(w.h["allreduce"], args)
    copied = w.alloc((4, 1), np.float64)
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(results).output(copied))
    w.drain()
    assert np.all(copied == expected)


@pytest.mark.timeout(60)
def test_consecutive_groups_on_the_same_tensors_are_ordered(w):
    args, partials, results, info, expected = allreduce_args(w, 4)
    for _ in range(10):
        w.submit_group(w.h["allreduce"], args)
    w.drain()
    assert np.all(results == expected)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad_rank", [0, 2])
def test_a_member_raising_fails_the_group_and_releases_the_barrier(w, bad_rank):
    seen = w.alloc(4, np.int64)
    seen[:] = 0
    t = w.submit_group(w.h["raises"], [tf.TaskArgs().no_dep(seen).scalar(bad_rank) for _ in range(4)])
    with pytest.raises(tf.TaskError) as e:
        w.drain(timeout=60)  # a hang would be a TimeoutError, not a TaskError
    assert t.state == "failed"
    f = [f for f in e.value.failures if f.task_id == t.id]
    assert len(f) == 1  # one task, one failure
    assert f[0].kind == "exception" and f"member {bad_rank} gives up" in f[0].message + f[0].traceback
    others = [r for r in range(4) if r != bad_rank]
    assert [int(seen[r]) for r in others] == [1, 1, 1], "members were not released with 'barrier broken'"
    assert seen[bad_rank] == 0


@pytest.mark.timeout(60)
def test_chips_serve_groups_again_after_a_failed_group(w):
    seen = w.alloc(4, np.int64)
    w.submit_group(w.h["raises"], [tf.TaskArgs().no_dep(seen).scalar(1) for _ in range(4)])
    with pytest.raises(tf.TaskError):
        w.drain(timeout=60)
    args, partials, results, info, expected = allreduce_args(w, 4)
    w.submit_group(w.h["allreduce"], args)
    w.drain(timeout=60)
    assert np.all(results == expected)


@pytest.mark.timeout(60)
def test_dependents_of_a_failed_group_fail_with_the_group_as_cause(w):
    seen = w.alloc(4, np.int64)
    out = w.alloc(4, np.int64)
    copied = w.alloc(4, np.int64)
    g = w.submit_group(w.h["raises"], [tf.TaskArgs().no_dep(seen).output(out[r:r + 1]).scalar(3)
                                       for r in range(4)])
    d = w.submit_sub(w.h["copy"], tf.TaskArgs().input(out).output(copied))
    with pytest.raises(tf.TaskError) as e:
        w.drain(timeout=60)
    by_id = {f.task_id: f for f in e.value.failures}
    assert by_id[d.id].kind == "dependency_failed" and by_id[d.id].cause_task_id == g.id


@pytest.mark.timeout(60)
def test_groups_mix_with_single_chip_tasks(w):
    jobs = []
    for i in range(8):
        n = 1 + i % 4
        args, partials, results, info, expected = allreduce_args(w, n)
        w.submit_group(w.h["allreduce"], args)
        single_out = w.alloc(3, np.int64)
        w.submit_next_level(w.h["single"], tf.TaskArgs().output(single_out))
        jobs.append((results, expected, single_out))
    w.drain(timeout=60)
    for results, expected, single_out in jobs:
        assert np.all(results == expected) and list(single_out[:2]) == [0, 1]


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(chips=4, sub_workers=1, window=32)

    @wk.kernel
    def allreduce(args, chip):
        block, partials, total, who = (args.tensor(i) for i in range(4))
        partials[chip.group_rank] = block.sum()
        chip.barrier()
        total[chip.group_rank] = partials.sum()
        who[chip.group_rank] = [chip.chip_id, chip.group_size, os.getpid()]
        chip.barrier()

    @wk.kernel
    def one_fails(args, chip):
        if chip.group_rank == 2:
            raise ValueError("member 2 fails")
        chip.barrier()

    @wk.sub
    def check(args):
        args.tensor(1)[...] = args.tensor(0)

    wk.init()
    wk.h = dict(allreduce=allreduce, one_fails=one_fails, check=check)
    return wk


def group_args(wk, n):
    blocks = [wk.share(np.full(5, r + 1.0)) for r in range(n)]
    partials, total = wk.alloc(n, np.float64), wk.alloc(n, np.float64)
    who = wk.alloc((n, 3), np.int64)
    return blocks, partials, total, who, [tf.TaskArgs().input(blocks[r]).inout(partials).inout(total).inout(who)
                                          for r in range(n)]


@pytest.mark.timeout(60)
def test_allreduce_on_four_chips_with_barrier(wk):
    blocks, partials, total, who, args = group_args(wk, 4)
    t = wk.submit_group(wk.h["allreduce"], args)
    after = wk.alloc(4, np.float64)
    wk.submit_sub(wk.h["check"], tf.TaskArgs().input(total).output(after))  # depends on the group
    wk.drain()
    assert t.state in ("completed", "consumed")
    assert np.array_equal(partials, [5, 10, 15, 20]) and np.all(total == 50) and np.all(after == 50)
    assert sorted(who[:, 0]) == [0, 1, 2, 3] and np.all(who[:, 1] == 4)
    assert len(set(who[:, 2])) == 4  # four distinct processes at once
    pids = wk.pids()
    assert sorted(who[:, 2]) == sorted(pids[f"chip {i}"] for i in range(4))


@pytest.mark.timeout(60)
def test_explicit_workers_place_members(wk):
    blocks, partials, total, who, args = group_args(wk, 2)
    wk.submit_group(wk.h["allreduce"], args, workers=[3, 1])
    wk.drain()
    assert list(who[:, 0]) == [3, 1] and np.all(total == 15)


@pytest.mark.timeout(60)
def test_member_failure_fails_the_group_and_releases_the_barrier(wk):
    t = wk.submit_group(wk.h["one_fails"], [tf.TaskArgs() for _ in range(4)])
    with pytest.raises(tf.TaskError) as e:
        wk.drain()
    fs = e.value.failures
    assert [f.task_id for f in fs] == [t.id]
    assert fs[0].kind == "exception" and "member 2 fails" in fs[0].message
    # The chips are free again: another group runs.
    blocks, partials, total, who, args = group_args(wk, 4)
    wk.submit_group(wk.h["allreduce"], args)
    wk.drain()
    assert np.all(total == 50)


@pytest.mark.timeout(60)
def test_groups_and_single_chip_work_interleave(wk):
    xs = []
    for i in range(6):
        blocks, partials, total, who, args = group_args(wk, 2 + i % 3)
        wk.submit_group(wk.h["allreduce"], args)
        xs.append((total, (2 + i % 3) * (3 + i % 3) / 2 * 5))
    wk.drain()
    for total, expected in xs:
        assert np.all(total == expected)


def uneven(args, chip):
    """Rank 0 returns at once; the others call barrier() and record how it
    ended in tensor 0 (no_dep): 1 = broken, 3 = passed."""
    seen = args.tensor(0)
    if chip.group_rank == 0:
        return
    time.sleep(0.05)
    try:
        chip.barrier()
    except RuntimeError as e:
        seen[chip.group_rank] = 1 if "barrier broken" in str(e) else 2
        raise
    seen[chip.group_rank] = 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [2, 4])
def test_a_member_that_returns_while_others_wait_breaks_the_barrier(worker_factory, size):
    w = worker_factory(chips=4)
    k = w.register_kernel(uneven)
    w.init()
    seen = w.zeros(size, np.int64)
    t = w.submit_group(k, [tf.TaskArgs().no_dep(seen) for _ in range(size)])
    err = t.exception(timeout=30)  # a hang would be a TimeoutError
    assert err is not None and err.failures[0].kind == "exception"
    assert "barrier broken" in err.failures[0].message
    assert isinstance(err.__cause__, tf.BarrierBroken) and isinstance(err.__cause__, RuntimeError)
    assert list(seen[1:]) == [1] * (size - 1)
    with pytest.raises(tf.TaskError):
        w.drain(timeout=30)
    # The chips serve the next group (one member: no barrier to break).
    good = w.submit_group(k, [tf.TaskArgs().no_dep(w.zeros(1, np.int64))])
    good.wait(timeout=30)
    w.close()  # returns: nothing hangs


@pytest.mark.timeout(60)
def test_members_that_all_pass_their_barriers_before_returning_complete(w):
    """A member leaving right after the last round breaks the barrier; no
    member that passed that round may read it as broken."""
    for _ in range(20):
        args, partials, results, info, expected = allreduce_args(w, 4)
        w.submit_group(w.h["allreduce"], args)
        w.drain(timeout=60)
        assert np.all(results == expected)
