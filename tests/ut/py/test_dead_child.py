"""A child that dies while running a task (contract section 6): the task
fails as worker_died naming the worker and the signal or exit code, drain()
never hangs, the dead child is replaced and the other workers keep serving."""
import faulthandler
import os
import signal
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import process_running, wait_until


def die(args):
    """scalar 0: 0 = SIGKILL itself, 1 = os._exit(3), 2 = SIGSEGV itself."""
    how = args.scalar(0)
    if how == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == 1:
        os._exit(3)
    else:
        faulthandler.disable()  # pytest's dump would only add noise
        os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(30)


def kdie(args, chip):
    die(args)


def fill(args):
    args.tensor(0)[...] = args.scalar(0)


def kfill(args, chip):
    args.tensor(0)[...] = args.scalar(0) + chip.chip_id


def kgroup_die(args, chip):
    seen = args.tensor(0)
    if chip.group_rank == 1:
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        chip.barrier()
        seen[chip.group_rank] = 3
    except RuntimeError:
        seen[chip.group_rank] = 1
        raise


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=2, sub_workers=2, window=64)
    w.h = {"die": w.register_sub(die), "kdie": w.register_kernel(kdie), "fill": w.register_sub(fill),
           "kfill": w.register_kernel(kfill)}
    w.init()
    return w


def drain_failures(w):
    with pytest.raises(tf.TaskError) as e:
        w.drain(timeout=60)  # a hang surfaces as TimeoutError, failing the test
    return {f.task_id: f for f in e.value.failures}


def assert_all_serve(w):
    """Every chip and both sub-workers run tasks again."""
    outs = [w.alloc(4, np.int64) for _ in range(6)]
    for c in range(2):
        w.submit_next_level(w.h["kfill"], tf.TaskArgs().output(outs[c]).scalar(10), worker=c)
    for i in range(4):
        w.submit_sub(w.h["fill"], tf.TaskArgs().output(outs[2 + i]).scalar(20 + i))
    w.drain(timeout=60)
    assert np.all(outs[0] == 10) and np.all(outs[1] == 11)
    assert [int(o[0]) for o in outs[2:]] == [20, 21, 22, 23]


@pytest.mark.timeout(90)
def test_chip_killed_by_sigkill(w):
    old = w.pids()["chip 1"]
    t = w.submit_next_level(w.h["kdie"], tf.TaskArgs().scalar(0), worker=1)
    f = drain_failures(w)[t.id]
    assert f.kind == "worker_died" and f.worker == "chip 1"
    assert "chip 1" in f.message and "SIGKILL" in f.message
    assert t.state == "failed"
    assert wait_until(lambda: not process_running(old), timeout=10)
    assert wait_until(lambda: w.pids()["chip 1"] != old, timeout=30)  # replaced
    assert_all_serve(w)


@pytest.mark.timeout(90)
def test_sub_exits_with_code_3(worker_factory):
    w = worker_factory(sub_workers=1, chips=1)
    die_h = w.register_sub(die)
    fill_h = w.register_sub(fill)
    w.init()
    t = w.submit_sub(die_h, tf.TaskArgs().scalar(1))
    f = drain_failures(w)[t.id]
    assert f.kind == "worker_died" and f.worker == "sub 0"
    assert "sub 0" in f.message and "exit code 3" in f.message
    out = w.alloc(2, np.int64)
    w.submit_sub(fill_h, tf.TaskArgs().output(out).scalar(5))  # the replacement serves
    w.drain(timeout=60)
    assert np.all(out == 5)


@pytest.mark.timeout(90)
def test_sub_killed_by_a_segfault_signal(w):
    t = w.submit_sub(w.h["die"], tf.TaskArgs().scalar(2))
    f = drain_failures(w)[t.id]
    assert f.kind == "worker_died" and f.worker in ("sub 0", "sub 1") and "SIGSEGV" in f.message
    assert f.worker in f.message
    assert_all_serve(w)


@pytest.mark.timeout(90)
def test_chip_exit_code_names_the_chip(w):
    t = w.submit_next_level(w.h["kdie"], tf.TaskArgs().scalar(1), worker=0)
    f = drain_failures(w)[t.id]
    assert f.kind == "worker_died" and f.worker == "chip 0" and "exit code 3" in f.message
    assert "chip 0" in f.message
    assert_all_serve(w)


@pytest.mark.timeout(90)
def test_dependents_of_a_dead_task_fail_and_independent_work_runs(w):
    a, b = w.alloc(4, np.int64), w.alloc(4, np.int64)
    free = [w.alloc(4, np.int64) for _ in range(8)]
    dead = w.submit_next_level(w.h["kdie"], tf.TaskArgs().output(a).scalar(0), worker=0)
    dep = w.submit_sub(w.h["fill"], tf.TaskArgs().input(a).output(b).scalar(1))
    for i, o in enumerate(free):
        if i % 2:
            w.submit_sub(w.h["fill"], tf.TaskArgs().output(o).scalar(i))
        else:
            w.submit_next_level(w.h["kfill"], tf.TaskArgs().output(o).scalar(i - 1), worker=1)
    by_id = drain_failures(w)
    assert set(by_id) == {dead.id, dep.id}
    assert by_id[dead.id].kind == "worker_died"
    assert by_id[dep.id].kind == "dependency_failed" and by_id[dep.id].cause_task_id == dead.id
    assert [int(o[0]) for o in free] == list(range(8))


@pytest.mark.timeout(120)
def test_repeated_deaths_of_every_worker_never_hang(w):
    ts = []
    for round_ in range(3):
        ts.append(w.submit_sub(w.h["die"], tf.TaskArgs().scalar(round_ % 2)))
        ts.append(w.submit_next_level(w.h["kdie"], tf.TaskArgs().scalar(0), worker=round_ % 2))
        by_id = drain_failures(w)
        assert all(by_id[t.id].kind == "worker_died" for t in ts[-2:])
    assert_all_serve(w)
    assert w.stats()["failed"] >= 6


@pytest.mark.timeout(90)
def test_task_wait_on_a_dead_task_raises(w):
    t = w.submit_sub(w.h["die"], tf.TaskArgs().scalar(0))
    with pytest.raises(tf.TaskError) as e:
        t.wait(timeout=60)
    assert e.value.failures[0].kind == "worker_died"
    with pytest.raises(tf.TaskError):
        w.drain(timeout=60)


@pytest.mark.timeout(90)
def test_group_member_dying_fails_the_group_and_releases_the_others(worker_factory):
    w = worker_factory(chips=3)
    h = w.register_kernel(kgroup_die)
    k = w.register_kernel(kfill)
    w.init()
    seen = w.alloc(3, np.int64)
    seen[:] = 0
    g = w.submit_group(h, [tf.TaskArgs().no_dep(seen) for _ in range(3)])
    by_id = drain_failures(w)
    assert by_id[g.id].kind == "worker_died" and "SIGKILL" in by_id[g.id].message
    assert seen[0] == 1 and seen[2] == 1  # released from the barrier, not passed
    out = w.alloc((3, 2), np.int64)
    for c in range(3):
        w.submit_next_level(k, tf.TaskArgs().output(out[c]).scalar(0), worker=c)
    w.drain(timeout=60)
    assert list(out[:, 0]) == [0, 1, 2]


@pytest.mark.timeout(90)
def test_child_killed_from_outside_while_idle_is_replaced(w):
    old = w.pids()["sub 0"]
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: w.pids()["sub 0"] != old, timeout=30)
    w.drain(timeout=60)  # nothing was running: nothing failed
    assert_all_serve(w)
