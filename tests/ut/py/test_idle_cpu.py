"""An idle Worker uses no CPU: neither its children nor its engine threads."""
import os
import time

import pytest

import tierflow as tf


def cpu_seconds(pid, tid=None):
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(60)
def test_idle_worker_uses_no_cpu(make_worker):
    w = make_worker(chips=2, sub_workers=2)
    noop = w.register_sub(lambda a: None)
    w.init()
    for _ in range(2000):
        w.submit_sub(noop)
    w.drain()
    time.sleep(0.2)
    pids = w.pids()
    me = os.getpid()
    threads = [t for t in os.listdir(f"/proc/{me}/task") if int(t) != me]
    before_children = {n: cpu_seconds(p) for n, p in pids.items()}
    before_threads = {t: cpu_seconds(me, t) for t in threads}
    time.sleep(1.0)
    used_children = {n: cpu_seconds(p) - before_children[n] for n, p in pids.items()}
    used_threads = {t: cpu_seconds(me, t) - before_threads[t] for t in threads}
    assert max(used_children.values()) <= 0.02, used_children
    assert max(used_threads.values(), default=0) <= 0.02, used_threads
    assert len(threads) >= 3  # scheduler, reaper, output pump exist and are asleep


def _busy_kernel(args, chip):
    args.tensor(0)[...] += 1


@pytest.mark.timeout(60)
def test_idle_parent_and_children_use_no_cpu_over_one_second(make_worker):
    """After init and some work (subs, chips, a group, a failure), one idle
    second costs < 0.05 s CPU in every child, in the process that forked
    them, and in the parent process as a whole (time.process_time and
    getrusage both)."""
    import resource

    import numpy as np

    from conftest import children_of, cpu_seconds_of

    before = children_of(os.getpid())
    w = make_worker(chips=2, sub_workers=2, window=16)
    s = w.register_sub(lambda a: a.tensor(0).__setitem__(Ellipsis, a.tensor(0) + 1))
    k = w.register_kernel(_busy_kernel)
    bad = w.register_sub(lambda a: 1 / 0)
    w.init()
    x = w.share(np.zeros(8))
    for i in range(200):
        w.submit_sub(s, tf.TaskArgs().inout(x[:4]))
        w.submit_next_level(k, tf.TaskArgs().inout(x[4:]))
    w.submit_group(k, [tf.TaskArgs().inout(x[0:1]), tf.TaskArgs().inout(x[1:2])])
    w.submit_sub(bad)
    with pytest.raises(tf.TaskError):
        w.drain(timeout=30)
    time.sleep(0.2)
    procs = dict(w.pids())
    for pid in children_of(os.getpid()) - before:  # e.g. the fork server
        procs[f"forked {pid}"] = pid
    child_before = {n: cpu_seconds_of(p) for n, p in procs.items()}
    parent_before = time.process_time()
    ru_before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1.0)
    parent_used = time.process_time() - parent_before
    ru_after = resource.getrusage(resource.RUSAGE_SELF)
    ru_used = (ru_after.ru_utime - ru_before.ru_utime) + (ru_after.ru_stime - ru_before.ru_stime)
    child_used = {n: cpu_seconds_of(p) - child_before[n] for n, p in procs.items()}
    assert parent_used < 0.05, parent_used
    assert ru_used < 0.05, ru_used
    assert max(child_used.values()) < 0.05, child_used
    assert len(procs) >= 4
    assert x[0] == 201 and x[4] == 200
