"""Failures across levels: the path of the failing worker, the root cause
kept, dead level-3 processes replaced, retries and timeouts at level 4."""
import os
import signal
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import wait_until


def boom(args, chip):
    raise ValueError(f"boom on chip {chip.chip_id}")


def add_one(args, chip):
    args.tensor(0)[...] += 1


def hang(args, chip):
    time.sleep(60)


def fail_once(args, chip):
    flag = args.tensor(0)
    flag[0] += 1
    if flag[0] == 1:
        raise KeyError("first attempt")


def setup(make_worker, n_l3=1, chips=2, **kw):
    w4 = make_worker(level=4, **kw)
    handles = None
    for _ in range(n_l3):
        l3 = tf.Worker(level=3, chips=chips)
        handles = {f.__name__: l3.register_kernel(f) for f in (boom, add_one, hang, fail_once)}
        w4.add_worker(l3)
    return w4, handles


@pytest.mark.timeout(60)
def test_inner_chip_exception_names_its_path_and_keeps_the_original(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def run_boom(orch, args):
        orch.submit_next_level(k["boom"], args, worker=1)

    w4.init()
    t = w4.submit_next_level(run_boom, tf.TaskArgs())
    with pytest.raises(tf.TaskError) as ei:
        t.wait(timeout=30)
    f = ei.value.failures[0]
    assert f.worker == "l3 0" and f.kind == "exception"
    assert "l3 0 › chip 1: ValueError: boom on chip 1" in f.message
    assert "in boom" in f.traceback and "boom on chip 1" in f.traceback
    cause = ei.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "boom on chip 1"


@pytest.mark.timeout(60)
def test_inner_dependency_chain_reports_its_root_cause(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def chain(orch, args):
        x = args.tensor(0)
        orch.submit_next_level(k["boom"], tf.TaskArgs().output(x), worker=0)
        orch.submit_next_level(k["add_one"], tf.TaskArgs().inout(x), worker=1)  # reads what boom should write

    w4.init()
    x = w4.zeros(2, np.int64)
    with pytest.raises(tf.TaskError) as ei:
        w4.submit_next_level(chain, tf.TaskArgs().inout(x)).wait(timeout=30)
    msg = ei.value.failures[0].message
    assert "l3 0 › chip 0: ValueError: boom on chip 0" in msg and "1 more failure" in msg
    assert x.tolist() == [0, 0]  # the dependent never ran


@pytest.mark.timeout(90)
def test_level_5_failure_path_has_every_level(make_worker):
    l3 = tf.Worker(level=3, chips=2)
    kb = l3.register_kernel(boom)
    w4 = tf.Worker(level=4)
    w4.add_worker(l3)
    o3 = w4.register_orch(lambda orch, args: orch.submit_next_level(kb, args, worker=1))
    w5 = make_worker(level=5)
    w5.add_worker(w4)
    o4 = w5.register_orch(lambda orch, args: orch.submit_next_level(o3, args))
    w5.init()
    with pytest.raises(tf.TaskError) as ei:
        w5.submit_next_level(o4, tf.TaskArgs()).wait(timeout=60)
    assert "l4 0 › l3 0 › chip 1: ValueError: boom on chip 1" in ei.value.failures[0].message
    assert isinstance(ei.value.__cause__, ValueError)


@pytest.mark.timeout(60)
def test_orch_function_exception_fails_the_l4_task_and_waits_for_what_it_submitted(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def submit_then_raise(orch, args):
        orch.submit_next_level(k["add_one"], args)
        raise RuntimeError("orch gave up")

    w4.init()
    x = w4.zeros(1, np.int64)
    with pytest.raises(tf.TaskError) as ei:
        w4.submit_next_level(submit_then_raise, tf.TaskArgs().inout(x)).wait(timeout=30)
    assert ei.value.failures[0].worker == "l3 0"
    assert "RuntimeError: orch gave up" in ei.value.failures[0].message
    assert x[0] == 1, "the task it submitted finished before the failure was reported"
    assert isinstance(ei.value.__cause__, RuntimeError)


@pytest.mark.timeout(60)
def test_retry_on_matches_the_inner_exception(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def flaky(orch, args):
        orch.submit_next_level(k["fail_once"], args)

    w4.init()
    flag = w4.zeros(1, np.int64)
    t = w4.submit_next_level(flaky, tf.TaskArgs().inout(flag), retries=1, retry_on=KeyError)
    t.wait(timeout=30)
    assert flag[0] == 2 and w4.stats()["retried"] == 1


@pytest.mark.timeout(60)
def test_tensor_of_the_level_above_not_given_to_the_task_is_refused(make_worker):
    """An array of the L4 arena that the L3 process knows (allocated before
    init, so inherited) but that the task did not name: the L4 never ordered
    the task after its writers, so the L3 refuses to run tasks on it."""
    w4, k = setup(make_worker)
    hidden = w4.zeros(2, np.int64)

    @w4.orch
    def uses_other(orch, args):
        orch.submit_next_level(k["add_one"], tf.TaskArgs().inout(hidden))

    w4.init()
    x = w4.zeros(2, np.int64)
    with pytest.raises(tf.TaskError) as ei:
        w4.submit_next_level(uses_other, tf.TaskArgs().inout(x)).wait(timeout=30)
    msg = ei.value.failures[0].message
    assert "ValueError" in msg and "outside every tensor the running orch task was given" in msg
    assert hidden.tolist() == [0, 0]


def _l3_pid_after_replacement(w4, old, name="l3 0"):
    assert wait_until(lambda: w4.pids()[name] != old and w4.stats()["alive"][name], timeout=20)
    return w4.pids()[name]


@pytest.mark.timeout(90)
def test_killed_l3_fails_its_task_as_worker_died_and_is_replaced(make_worker):
    w4, k = setup(make_worker, n_l3=2)

    @w4.orch
    def stuck(orch, args):
        orch.submit_next_level(k["hang"], args)

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args)

    w4.init()
    t = w4.submit_next_level(stuck, tf.TaskArgs(), worker=0)
    assert wait_until(lambda: t.running(), timeout=20)
    old = w4.pids()["l3 0"]
    os.kill(old, signal.SIGKILL)
    with pytest.raises(tf.TaskError) as ei:
        t.wait(timeout=30)
    f = ei.value.failures[0]
    assert f.kind == "worker_died" and f.worker == "l3 0" and "l3 0" in f.message
    new = _l3_pid_after_replacement(w4, old)
    assert new != old and len(w4.pids()) == 2 and w4.stats()["restarts"] == 1
    x = w4.zeros(1, np.int64)
    w4.submit_next_level(inc, tf.TaskArgs().inout(x), worker=0).wait(timeout=30)  # the new L3 works
    assert x[0] == 1
    with pytest.raises(tf.TaskError):
        w4.drain()


@pytest.mark.timeout(90)
def test_retries_rerun_an_orch_task_whose_l3_died(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def die_first_time(orch, args):
        flag = args.tensor(0)
        flag[0] += 1
        if flag[0] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        orch.submit_next_level(k["add_one"], tf.TaskArgs().inout(args.tensor(1)))

    w4.init()
    flag, x = w4.zeros(1, np.int64), w4.zeros(1, np.int64)
    w4.submit_next_level(die_first_time, tf.TaskArgs().inout(flag).inout(x), retries=1).wait(timeout=60)
    assert flag[0] == 2 and x[0] == 1 and w4.stats()["restarts"] == 1


@pytest.mark.timeout(90)
def test_killed_chip_inside_an_l3_fails_the_l4_task_with_its_path(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def stuck_and_report(orch, args):
        orch.submit_next_level(k["hang"], tf.TaskArgs(), worker=1)

    @w4.orch
    def chip_pids(orch, args):
        return orch._worker.pids()

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k["add_one"], args, worker=1)

    w4.init()
    before = w4.submit_next_level(chip_pids, tf.TaskArgs()).result(timeout=30)
    t = w4.submit_next_level(stuck_and_report, tf.TaskArgs())
    # Kill only once the inner task runs on that chip (a loaded machine may
    # take a while to get there).
    assert wait_until(lambda: "chip 1" in ((w4.stats()["l3 0"] or {}).get("running") or {}), timeout=20)
    os.kill(before["chip 1"], signal.SIGKILL)
    with pytest.raises(tf.TaskError) as ei:
        t.wait(timeout=30)
    f = ei.value.failures[0]
    assert f.worker == "l3 0" and "l3 0 › chip 1" in f.message and "worker_died" in f.message
    # The L3 process lived and replaced its chip; the L4 pool is intact.
    assert w4.stats()["restarts"] == 0 and w4.stats()["alive"]["l3 0"]
    x = w4.zeros(1, np.int64)
    w4.submit_next_level(inc, tf.TaskArgs().inout(x)).wait(timeout=30)
    after = w4.submit_next_level(chip_pids, tf.TaskArgs()).result(timeout=30)
    assert x[0] == 1 and after["chip 1"] != before["chip 1"] and after["chip 0"] == before["chip 0"]
    with pytest.raises(tf.TaskError):
        w4.drain()


@pytest.mark.timeout(90)
def test_timeout_at_level_4_kills_and_replaces_the_l3(make_worker):
    w4, k = setup(make_worker)

    @w4.orch
    def stuck(orch, args):
        orch.submit_next_level(k["hang"], args)

    w4.init()
    old = w4.pids()["l3 0"]
    with pytest.raises(tf.TaskError) as ei:
        w4.submit_next_level(stuck, tf.TaskArgs(), timeout=1.0).wait(timeout=30)
    assert ei.value.failures[0].kind == "timeout"
    _l3_pid_after_replacement(w4, old)
    with pytest.raises(tf.TaskError):
        w4.drain()


@pytest.mark.timeout(120)
def test_kill_injection_gives_an_exact_failure_set_and_a_full_pool(make_worker):
    """20 orch tasks, each adding 1 to its own element on a chip; an L3 is
    killed mid-run. Every task either completed (its element is 1) or failed
    as worker_died (its element may be 0 or 1: it may have run before the
    kill), none hangs, and the pool is back to two live L3s."""
    w4, k = setup(make_worker, n_l3=2)

    @w4.orch
    def slow_inc(orch, args):
        time.sleep(0.05)
        orch.submit_next_level(k["add_one"], args)

    w4.init()
    x = w4.zeros(20, np.int64)
    tasks = [w4.submit_next_level(slow_inc, tf.TaskArgs().inout(x[i:i + 1])) for i in range(20)]
    time.sleep(0.2)
    os.kill(w4.pids()["l3 1"], signal.SIGKILL)
    done, not_done = tf.wait(tasks, timeout=60)
    assert not not_done
    failed = [i for i, t in enumerate(tasks) if t.exception() is not None]
    assert failed, "the kill hit a running task"
    for i, t in enumerate(tasks):
        if i in failed:
            assert t.exception().failures[0].kind == "worker_died"
        else:
            assert x[i] == 1
    assert wait_until(lambda: all(w4.stats()["alive"].values()), timeout=20)
    assert len(w4.pids()) == 2
    with pytest.raises(tf.TaskError):
        w4.drain()


@pytest.mark.timeout(90)
def test_failed_and_good_requests_in_turn_on_one_level_3_each_get_their_own_answer(make_worker):
    # A level-3 process answers a good request from its scheduler the moment
    # the request's work is over, and a failed one from its serving thread
    # with the failure's path: mixed in one stream, each request gets its
    # own value or failure, and nothing of one leaks into the next.
    w4, k = setup(make_worker)

    @w4.orch
    def step(orch, args):
        i = int(args.scalar(0))
        orch.submit_next_level(k["boom" if i % 3 == 0 else "add_one"], tf.TaskArgs().inout(args.tensor(0)))
        return i * 10

    w4.init()
    x = w4.zeros(60, np.int64)
    tasks = [w4.submit_next_level(step, tf.TaskArgs().inout(x[i:i + 1]).scalar(i)) for i in range(60)]
    with pytest.raises(tf.TaskError) as ei:
        w4.drain(timeout=60)
    failed = {f.task_id for f in ei.value.failures}
    assert failed == {t.id for i, t in enumerate(tasks) if i % 3 == 0}
    for i, t in enumerate(tasks):
        if i % 3 == 0:
            assert "l3 0 › chip" in t.exception().failures[0].message
        else:
            assert t.result() == i * 10
    assert x.tolist() == [0 if i % 3 == 0 else 1 for i in range(60)]
