"""Level 4 and 5: orch functions run on level-3 Workers in child processes,
on the level above's memory, with dependencies inferred at every level."""
import os

import numpy as np
import pytest

import tierflow as tf


def add_chip_id(args, chip):
    x = args.tensor(0)
    x += chip.chip_id + 1


def add_one(args, chip):
    args.tensor(0)[...] += 1


def times_two(args, chip):
    args.tensor(0)[...] *= 2


def add_rank(args, chip):
    args.tensor(0)[...] += chip.group_rank + 1
    chip.barrier()


def l3_template(chips=2, subs=0, **kw):
    l3 = tf.Worker(level=3, chips=chips, sub_workers=subs, **kw)
    handles = {f.__name__: l3.register_kernel(f) for f in (add_chip_id, add_one, times_two, add_rank)}
    return l3, handles


def level4(make_worker, n_l3=1, chips=2, **kw):
    w4 = make_worker(level=4, **kw)
    templates = [l3_template(chips) for _ in range(n_l3)]
    for l3, _ in templates:
        w4.add_worker(l3)
    return w4, templates[0][1]


@pytest.mark.timeout(60)
def test_orch_runs_in_its_l3_process_and_its_chips_write_the_l4_tensor(make_worker):
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def on_chip_1(orch, args):
        orch.submit_next_level(k["add_chip_id"], args, worker=1)
        return os.getpid()

    w4.init()
    x = w4.zeros(4, np.int64)
    t = w4.submit_next_level(on_chip_1, tf.TaskArgs().inout(x), worker=1)
    assert t.result(timeout=30) == w4.pids()["l3 1"]
    assert x.tolist() == [2, 2, 2, 2]
    assert t.state in ("completed", "consumed")


@pytest.mark.timeout(60)
def test_tensors_cross_levels_zero_copy(make_worker):
    """The L3 process and its chips see the L4's array at the same address:
    no copy on the way down, none on the way back."""
    w4, k = level4(make_worker)

    @w4.orch
    def address(orch, args):
        orch.submit_next_level(k["add_one"], args)
        return args.tensor(0).__array_interface__["data"][0]

    w4.init()
    x = w4.zeros((3, 5), np.float32)
    view = x[1]
    assert w4.submit_next_level(address, tf.TaskArgs().inout(view)).result(timeout=30) == view.ctypes.data
    assert x[1].tolist() == [1.0] * 5 and x[0].sum() == 0 and x[2].sum() == 0


@pytest.mark.timeout(90)
def test_l4_dependencies_follow_submission_order_across_l3s(make_worker):
    """+1 and *2 on one buffer, spread over two L3s by whichever is idle:
    inferred from the L4 tags, the result is the sequential one."""
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args)

    @w4.orch
    def dbl(orch, args):
        orch.submit_next_level(k["times_two"], args)

    w4.init()
    x = w4.zeros(16, np.int64)
    expect = 0
    for i in range(24):
        if i % 3 == 2:
            w4.submit_next_level(dbl, tf.TaskArgs().inout(x))
            expect *= 2
        else:
            w4.submit_next_level(inc, tf.TaskArgs().inout(x))
            expect += 1
    w4.drain(timeout=60)
    assert x.tolist() == [expect] * 16
    per = w4.stats()["tasks_per_worker"]
    assert per["l3 0"] + per["l3 1"] == 24


@pytest.mark.timeout(60)
def test_disjoint_views_of_one_l4_buffer_run_in_parallel_and_inside_l3_too(make_worker):
    """Each orch task gets one column block; inside, the L3 splits it over
    its chips as views of the lent tensor."""
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def split(orch, args):
        block = args.tensor(0)
        half = block.shape[0] // 2
        orch.submit_next_level(k["add_chip_id"], tf.TaskArgs().inout(block[:half]), worker=0)
        orch.submit_next_level(k["add_chip_id"], tf.TaskArgs().inout(block[half:]), worker=1)

    w4.init()
    x = w4.zeros(32, np.int64)
    for i in range(4):
        w4.submit_next_level(split, tf.TaskArgs().inout(x[i * 8:(i + 1) * 8]))
    w4.drain(timeout=60)
    assert x.tolist() == ([1] * 4 + [2] * 4) * 4


@pytest.mark.timeout(60)
def test_group_of_two_l3s_is_one_l4_node(make_worker):
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def tensor_parallel(orch, args):
        x = args.tensor(0)
        orch.submit_group(k["add_rank"], [tf.TaskArgs().inout(x[:2]), tf.TaskArgs().inout(x[2:])])

    w4.init()
    y = w4.zeros(8, np.int64)
    g = w4.submit_group(tensor_parallel, [tf.TaskArgs().inout(y[:4]), tf.TaskArgs().inout(y[4:])], workers=[1, 0])
    g.wait(timeout=30)
    assert y.tolist() == [1, 1, 2, 2, 1, 1, 2, 2]
    assert w4.stats()["tasks_per_worker"] == {"l3 0": 1, "l3 1": 1}


@pytest.mark.timeout(60)
def test_l4_sub_workers_and_orch_tasks_share_the_l4_dependency_rules(make_worker):
    w4, k = level4(make_worker, sub_workers=1)
    fill = w4.register_sub(lambda a: a.tensor(0).__setitem__(Ellipsis, 10))
    check = w4.register_sub(lambda a: a.tensor(1).__setitem__(Ellipsis, a.tensor(0).sum()))

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args)

    w4.init()
    x, total = w4.zeros(4, np.int64), w4.zeros(1, np.int64)
    w4.submit_sub(fill, tf.TaskArgs().output(x))
    w4.submit_next_level(inc, tf.TaskArgs().inout(x))
    w4.submit_sub(check, tf.TaskArgs().input(x).output(total))
    w4.drain(timeout=30)
    assert x.tolist() == [11] * 4 and total[0] == 44


@pytest.mark.timeout(60)
def test_orch_may_use_scopes_and_more_tasks_than_the_l3_window(make_worker):
    w4 = make_worker(level=4)
    l3, k = l3_template(window=4)
    w4.add_worker(l3)

    @w4.orch
    def many(orch, args):
        x = args.tensor(0)
        for i in range(x.shape[0]):
            with orch.scope():
                orch.submit_next_level(k["add_one"], tf.TaskArgs().inout(x[i:i + 1]))

    w4.init()
    x = w4.zeros(40, np.int64)
    w4.submit_next_level(many, tf.TaskArgs().inout(x)).wait(timeout=30)
    assert x.tolist() == [1] * 40


@pytest.mark.timeout(60)
def test_scalars_and_return_values_cross_levels(make_worker):
    w4, k = level4(make_worker)

    @w4.orch
    def echo(orch, args):
        return {"n": args.scalar(0), "f": args.scalar(1), "pid": os.getpid()}

    w4.init()
    r = w4.submit_next_level(echo, tf.TaskArgs().scalar(7).scalar(2.5)).result(timeout=30)
    assert r["n"] == 7 and r["f"] == 2.5 and r["pid"] == w4.pids()["l3 0"]


@pytest.mark.timeout(60)
def test_sessions_and_run_at_level_4(make_worker):
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args)

    w4.init()
    x, y = w4.zeros(2, np.int64), w4.zeros(2, np.int64)
    with w4.session("client", weight=2) as s:
        for _ in range(5):
            s.submit_next_level(inc, tf.TaskArgs().inout(x))
        s.drain(timeout=30)
    w4.run(lambda orch, _: [orch.submit_next_level(inc, tf.TaskArgs().inout(y)) for _ in range(3)])
    assert x.tolist() == [5, 5] and y.tolist() == [3, 3]


@pytest.mark.timeout(90)
def test_level_5_drives_level_4_drives_level_3_drives_chips(make_worker):
    l3, k = l3_template()
    w4 = tf.Worker(level=4, sub_workers=0)
    w4.add_worker(l3)

    @w4.orch
    def l3_orch(orch, args):
        x = args.tensor(0)
        orch.submit_group(k["add_rank"], [tf.TaskArgs().inout(x[:2]), tf.TaskArgs().inout(x[2:])])
        return os.getpid()

    w5 = make_worker(level=5)
    w5.add_worker(w4)

    @w5.orch
    def l4_orch(orch, args):
        t = orch.submit_next_level(l3_orch, tf.TaskArgs().inout(args.tensor(0)[:4]))
        return os.getpid(), t.result(timeout=20)

    w5.init()
    x = w5.zeros(8, np.int64)
    l4_pid, l3_pid = w5.submit_next_level(l4_orch, tf.TaskArgs().inout(x)).result(timeout=60)
    assert x.tolist() == [1, 1, 2, 2, 0, 0, 0, 0]
    assert l4_pid == w5.pids()["l4 0"]
    assert l3_pid not in (l4_pid, os.getpid()) and l3_pid in _descendants(l4_pid)
    assert w5.stats()["alive"] == {"l4 0": True}


def _descendants(pid):
    from conftest import descendants_of
    return descendants_of(pid)


@pytest.mark.timeout(60)
def test_stats_include_each_next_level_workers_own_stats(make_worker):
    w4, k = level4(make_worker, n_l3=2)

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args, worker=1)

    w4.init()
    x = w4.zeros(1, np.int64)
    for _ in range(3):
        w4.submit_next_level(inc, tf.TaskArgs().inout(x), worker=0)
    w4.drain(timeout=30)
    s = w4.stats()
    assert s["tasks_per_worker"] == {"l3 0": 3, "l3 1": 0}
    assert s["l3 0"]["tasks_per_worker"] == {"chip 0": 0, "chip 1": 3}
    assert s["l3 0"]["completed"] == 3 and s["l3 1"]["submitted"] == 0
    os.kill(w4.pids()["l3 1"], 9)
    from conftest import wait_until
    assert wait_until(lambda: w4.stats()["l3 1"] is not None and w4.stats()["restarts"] == 1, timeout=20)


@pytest.mark.timeout(60)
def test_a_with_block_may_add_workers_and_orch_functions_before_any_work():
    with tf.Worker(level=4) as w4:
        l3, k = l3_template()
        w4.add_worker(l3)

        @w4.orch
        def inc(orch, args):
            orch.submit_next_level(k["add_one"], args)

        x = w4.zeros(2, np.int64)
        w4.submit_next_level(inc, tf.TaskArgs().inout(x)).wait(timeout=30)
        assert x.tolist() == [1, 1] and list(w4.pids()) == ["l3 0"]
        with pytest.raises(tf.WorkerStateError, match="before init"):
            w4.add_worker(tf.Worker(level=3, chips=1))


@pytest.mark.timeout(90)
def test_one_template_added_twice_is_two_level_3_workers(make_worker):
    # As in the contract's example: the same template for several next-level
    # workers (add_worker twice here); each is a process of its own with its
    # own stats, and one group spans both.
    l3, k = l3_template()
    w4 = make_worker(level=4, sub_workers=0)
    a, b = w4.add_worker(l3), w4.add_worker(l3)
    assert (a, b) == (0, 1)

    @w4.orch
    def add_one(orch, args):
        orch.submit_next_level(k["add_one"], args)
        return os.getpid()

    w4.init()
    x = w4.zeros(4, np.int64)
    pa = w4.submit_next_level(add_one, tf.TaskArgs().inout(x[0:1]), worker=a).result(timeout=30)
    pb = w4.submit_next_level(add_one, tf.TaskArgs().inout(x[1:2]), worker=b).result(timeout=30)
    g = w4.submit_group(add_one, [tf.TaskArgs().inout(x[2:3]), tf.TaskArgs().inout(x[3:4])], workers=[a, b])
    w4.drain(timeout=30)
    assert x.tolist() == [1, 1, 1, 1]
    assert pa == w4.pids()["l3 0"] and pb == w4.pids()["l3 1"] and pa != pb
    assert g.result() in (pa, pb)
    st = w4.stats()
    assert st["l3 0"]["completed"] == 2 and st["l3 1"]["completed"] == 2


@pytest.mark.timeout(120)
def test_level_5_runs_one_orch_function_over_two_level_4_templates_set_up_alike(make_worker):
    # Handles of templates at the same place in one tree are interchangeable
    # when they registered the same function at the same index — two levels
    # down as well as one (a level-5 group over two level-4 Workers).
    def build():
        l3, k = l3_template()
        w4 = tf.Worker(level=4, sub_workers=0)
        w4.add_worker(l3)
        return w4, k

    (w4a, ka), (w4b, _kb) = build(), build()

    def on_l3(orch, args):
        orch.submit_next_level(ka["add_one"], args)  # registered on w4a's template only

    oa, _ob = w4a.register_orch(on_l3), w4b.register_orch(on_l3)
    w5 = make_worker(level=5)
    w5.add_worker(w4a)
    w5.add_worker(w4b)

    @w5.orch
    def on_l4(orch, args):
        orch.submit_next_level(oa, args)

    w5.init()
    x = w5.zeros(2, np.int64)
    w5.submit_group(on_l4, [tf.TaskArgs().inout(x[0:1]), tf.TaskArgs().inout(x[1:2])], workers=[0, 1])
    w5.drain(timeout=60)
    assert x.tolist() == [1, 1]
