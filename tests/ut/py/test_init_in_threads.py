"""Workers started from threads (robustness, contract section 1).

PR_SET_PDEATHSIG fires when the *thread* that forked exits, so a pool tied
to it would die with the thread that called init(). Sessions and the daemon
start and stop Workers from many threads at once."""
import threading

import numpy as np
import pytest

import tierflow as tf

from conftest import process_running


def fill(args):
    args.tensor(0)[...] = args.scalar(0)


@pytest.mark.timeout(60)
def test_a_worker_initialised_in_a_thread_that_exits_keeps_its_pool(worker_factory):
    w = worker_factory(sub_workers=2, chips=1)
    h = w.register_sub(fill)
    k = w.register_kernel(lambda args, chip: fill(args))
    t = threading.Thread(target=w.init)
    t.start()
    t.join()
    pids = w.pids()
    x = w.zeros(8, np.int64)
    w.submit_sub(h, tf.TaskArgs().output(x[:4]).scalar(1))
    w.submit_next_level(k, tf.TaskArgs().output(x[4:]).scalar(2))
    w.drain(timeout=30)
    assert np.all(x[:4] == 1) and np.all(x[4:] == 2)
    assert w.pids() == pids and all(process_running(p) for p in pids.values())
    assert w.stats()["restarts"] == 0


@pytest.mark.timeout(240)
@pytest.mark.parametrize("threads", [2, 4])
def test_init_and_close_of_different_workers_from_many_threads_at_once(threads):
    """Each thread repeatedly creates, uses and closes its own Worker while
    the others do the same: every init must succeed and every pool serve."""
    rounds = 6
    errors = []

    def cycle(me):
        try:
            for r in range(rounds):
                w = tf.Worker(level=3, sub_workers=1)
                h = w.register_sub(fill)
                w.init()
                x = w.zeros(4, np.int64)
                w.submit_sub(h, tf.TaskArgs().output(x).scalar(me * 100 + r))
                w.drain(timeout=30)
                assert np.all(x == me * 100 + r)
                pids = list(w.pids().values())
                w.close()
                assert not any(process_running(p) for p in pids) or _gone(pids)
        except BaseException as e:  # reported below with the thread's number
            errors.append((me, repr(e)))

    ts = [threading.Thread(target=cycle, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def _gone(pids, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(process_running(p) for p in pids):
            return True
        time.sleep(0.01)
    return False
