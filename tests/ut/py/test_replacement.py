"""Dead children are replaced by the fork server; the pool keeps its size."""
import os
import signal
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import process_running


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()



@pytest.fixture
def worker():
    w = tf.Worker(level=3, chips=2, sub_workers=2, window=32)

    @w.kernel
    def die(args, chip):
        os.kill(os.getpid(), signal.SIGKILL)

    @w.kernel
    def exit3(args, chip):
        os._exit(3)

    @w.kernel
    def fill(args, chip):
        args.tensor(0)[...] = chip.chip_id + 1

    @w.sub
    def subfill(args):
        args.tensor(0)[...] = 7

    w.handles = dict(die=die, exit3=exit3, fill=fill, subfill=subfill)
    w.init()
    yield w
    w.close()


@pytest.mark.timeout(60)
def test_chip_killed_mid_task_is_replaced_and_serves(worker):
    h = worker.handles
    before = worker.pids()
    t = worker.submit_next_level(h["die"], tf.TaskArgs(), worker=1)
    err = t.exception(timeout=10)
    assert err is not None
    f = err.failures[0]
    assert f.kind == "worker_died" and f.worker == "chip 1"
    assert "SIGKILL" in f.message and str(before["chip 1"]) in f.message
    assert wait_for(lambda: worker.stats()["restarts"] == 1)
    after = worker.pids()
    assert after["chip 1"] != before["chip 1"] and process_running(after["chip 1"])
    assert not process_running(before["chip 1"])
    # The replacement runs registered kernels, also work directed to it.
    out = worker.alloc(4)
    worker.submit_next_level(h["fill"], tf.TaskArgs().output(out), worker=1)
    with pytest.raises(tf.TaskError):
        worker.drain()  # reports the earlier death once
    assert np.all(out == 2)


@pytest.mark.timeout(60)
def test_exit_code_is_named_and_idle_death_is_replaced(worker):
    h = worker.handles
    t = worker.submit_next_level(h["exit3"], tf.TaskArgs(), worker=0)
    f = t.exception(timeout=10).failures[0]
    assert f.kind == "worker_died" and "exit code 3" in f.message and f.worker == "chip 0"
    sub0 = worker.pids()["sub 0"]
    os.kill(sub0, signal.SIGKILL)  # idle: no task fails
    assert wait_for(lambda: worker.pids()["sub 0"] != sub0)
    assert wait_for(lambda: all(worker.stats()["alive"].values()))
    outs = [worker.alloc(2) for _ in range(8)]
    for o in outs:
        worker.submit_sub(h["subfill"], tf.TaskArgs().output(o))
    with pytest.raises(tf.TaskError) as ei:
        worker.drain()
    assert [x.kind for x in ei.value.failures] == ["worker_died"]
    assert all(np.all(o == 7) for o in outs)
    assert len(worker.pids()) == 4 and all(process_running(p) for p in worker.pids().values())


@pytest.mark.timeout(60)
def test_retries_rerun_a_task_whose_worker_died():
    w = tf.Worker(level=3, chips=1, window=8)

    @w.kernel
    def die_once(args, chip):
        flag = args.tensor(0)
        if flag[0] == 0:
            flag[0] = 1
            os.kill(os.getpid(), signal.SIGKILL)
        args.tensor(1)[...] = 5

    @w.kernel
    def raises(args, chip):
        args.tensor(0)[0] += 1
        raise ValueError("not retried")

    with w:
        flag, out = w.alloc(1, np.int32), w.alloc(3)
        flag[0] = 0
        t = w.submit_next_level(die_once, tf.TaskArgs().inout(flag).output(out), retries=1)
        t.wait(timeout=20)
        assert np.all(out == 5) and w.stats()["retried"] == 1
        count = w.alloc(1, np.int32)
        count[0] = 0
        t2 = w.submit_next_level(raises, tf.TaskArgs().inout(count), retries=3)
        assert t2.exception(timeout=10).failures[0].kind == "exception"
        assert count[0] == 1  # exceptions are not retried
        with pytest.raises(tf.TaskError):
            w.drain()


@pytest.mark.timeout(60)
def test_group_member_death_releases_the_others_from_the_barrier():
    w = tf.Worker(level=3, chips=3, window=8)

    @w.kernel
    def member(args, chip):
        if chip.group_rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        chip.barrier()

    with w:
        t = w.submit_group(member, [tf.TaskArgs() for _ in range(3)])
        f = t.exception(timeout=20).failures[0]
        assert f.kind == "worker_died" and "SIGKILL" in f.message
        assert wait_for(lambda: w.stats()["restarts"] == 1 and all(w.stats()["alive"].values()))
        with pytest.raises(tf.TaskError):
            w.drain()


def test_retries_must_be_a_non_negative_int(worker):
    with pytest.raises(ValueError, match="retries"):
        worker.submit_sub(worker.handles["subfill"], tf.TaskArgs(), retries=-1)


@pytest.mark.timeout(60)
def test_losing_the_fork_server_fails_work_instead_of_hanging():
    w = tf.Worker(level=3, chips=2, sub_workers=1, window=16)

    @w.kernel
    def nap(args, chip):
        time.sleep(0.5)

    with w:
        pids = list(w.pids().values())
        running = w.submit_next_level(nap, worker=0)
        time.sleep(0.1)
        os.kill(w._server_pid, signal.SIGKILL)  # children die with it
        queued = [w.submit_next_level(nap, worker=1) for _ in range(3)]
        with pytest.raises(tf.TaskError) as e:
            w.drain(timeout=20)
        failed = {f.task_id for f in e.value.failures}
        assert running.id in failed and all(t.id in failed for t in queued)
        assert all(f.kind == "worker_died" for f in e.value.failures)
        # PR_SET_PDEATHSIG killed the children when the server died.
        assert wait_for(lambda: not any(process_running(p) for p in pids), timeout=2)


@pytest.mark.timeout(90)
def test_crashing_tasks_never_shrink_the_pool(worker):
    """Deaths caused by tasks do not count toward giving up on a worker:
    only a process that dies before it takes its first task does."""
    before = worker.pids()
    for i in range(8):  # more than the crash-loop limit, all on chip 0
        t = worker.submit_next_level(worker.handles["die"], worker=0)
        assert t.exception(timeout=30).failures[0].kind == "worker_died"
    assert wait_for(lambda: worker.stats()["alive"]["chip 0"], timeout=20)
    out = worker.alloc(1, np.int64)
    worker.submit_next_level(worker.handles["fill"], tf.TaskArgs().output(out), worker=0).wait(timeout=30)
    assert out[0] == 1
    assert worker.pids().keys() == before.keys()
    with pytest.raises(tf.TaskError):
        worker.drain()
