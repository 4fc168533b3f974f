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
