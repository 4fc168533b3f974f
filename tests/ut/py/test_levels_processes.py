"""The process tree of a level-4 Worker: nested output prefixes, no CPU
when idle, and nothing left at any depth after close() or the parent's
SIGKILL."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import cpu_seconds_of, descendants_of, process_running, wait_until


def say(args, chip):
    print(f"hello from chip {chip.chip_id}")


def add_one(args, chip):
    args.tensor(0)[...] += 1


@pytest.mark.timeout(60)
def test_nested_children_keep_their_prefixes(make_worker, capfd):
    w4 = make_worker(level=4)
    for _ in range(2):
        l3 = tf.Worker(level=3, chips=2)
        k = l3.register_kernel(say)
        w4.add_worker(l3)

    @w4.orch
    def greet(orch, args):
        print("orch here")
        orch.submit_group(k, [tf.TaskArgs(), tf.TaskArgs()])

    w4.init()
    w4.submit_next_level(greet, tf.TaskArgs(), worker=1).wait(timeout=30)
    w4.close()
    err = capfd.readouterr().err.splitlines()
    assert "[l3 1] orch here" in err
    assert "[l3 1 chip 0] hello from chip 0" in err and "[l3 1 chip 1] hello from chip 1" in err


@pytest.mark.timeout(90)
def test_idle_level_4_tree_uses_no_cpu(make_worker):
    w4 = make_worker(level=4, sub_workers=1)
    for _ in range(2):
        l3 = tf.Worker(level=3, chips=2, sub_workers=1)
        k = l3.register_kernel(add_one)
        w4.add_worker(l3)

    @w4.orch
    def inc(orch, args):
        orch.submit_next_level(k, args)

    w4.init()
    x = w4.zeros(1, np.int64)
    for _ in range(50):
        w4.submit_next_level(inc, tf.TaskArgs().inout(x))
    w4.drain(timeout=60)
    time.sleep(0.3)
    tree = descendants_of(os.getpid())
    # Every level: L4 children, L3 fork servers, chips and sub-workers.
    assert len(tree) >= 1 + 1 + 2 * (1 + 1 + 2 + 1)
    before = {p: cpu_seconds_of(p) for p in tree if process_running(p)}
    time.sleep(1.0)
    used = {p: cpu_seconds_of(p) - c for p, c in before.items() if process_running(p)}
    assert max(used.values()) <= 0.03, used
    assert sum(used.values()) <= 0.1, used


PARENT = textwrap.dedent("""
    import os, sys, time
    import tierflow as tf
    def spin(args, chip):
        while True:
            pass
    l3 = tf.Worker(level=3, chips=2, sub_workers=1)
    k = l3.register_kernel(spin)
    w4 = tf.Worker(level=4, sub_workers=1)
    w4.add_worker(l3)
    o = w4.register_orch(lambda orch, args: orch.submit_next_level(k, args))
    w4.init()
    w4.submit_next_level(o, tf.TaskArgs())
    time.sleep(1.0)
    print("ready", flush=True)
    time.sleep(60)
""")


def _shm():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


@pytest.mark.timeout(60)
def test_parent_sigkill_leaves_no_descendant_at_any_depth():
    shm = _shm()
    p = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        tree = descendants_of(p.pid)
        # fork server, sub, l3 process; inside it: its fork server, 2 chips, 1 sub
        assert len(tree) >= 7, tree
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        assert wait_until(lambda: not any(process_running(x) for x in tree), timeout=5), \
            [x for x in tree if process_running(x)]
        assert _shm() <= shm
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.timeout(60)
def test_close_leaves_no_descendant_and_no_shared_memory_name(make_worker):
    shm = _shm()
    w4 = make_worker(level=4)
    l3 = tf.Worker(level=3, chips=1)
    k = l3.register_kernel(add_one)
    w4.add_worker(l3)
    o = w4.register_orch(lambda orch, args: orch.submit_next_level(k, args))
    w4.init()
    x = w4.zeros(1, np.int64)
    w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(timeout=30)
    tree = descendants_of(os.getpid())
    w4.close()
    assert wait_until(lambda: not any(process_running(p) for p in tree), timeout=5)
    assert _shm() <= shm and x[0] == 1


def hang(args, chip):
    time.sleep(60)


@pytest.mark.timeout(60)
def test_close_with_cancel_stops_a_level_4_tree_that_is_running_work(make_worker):
    w4 = make_worker(level=4)
    l3 = tf.Worker(level=3, chips=1)
    k = l3.register_kernel(hang)
    w4.add_worker(l3)
    o = w4.register_orch(lambda orch, args: orch.submit_next_level(k, args))
    w4.init()
    tasks = [w4.submit_next_level(o, tf.TaskArgs()) for _ in range(3)]
    assert wait_until(lambda: tasks[0].running(), timeout=20)
    tree = descendants_of(os.getpid())
    t0 = time.monotonic()
    w4.close(cancel=True)
    assert time.monotonic() - t0 < 10
    assert [t.exception().failures[0].kind for t in tasks] == ["cancelled"] * 3
    assert wait_until(lambda: not any(process_running(p) for p in tree), timeout=5)
