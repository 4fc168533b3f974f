"""Shutdown (contract sections 1 and 6): close() and every other way a
Worker ends leave no child process behind, and a closed Worker refuses
every call with tf.WorkerClosed."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import children_of, process_running, wait_until


def nap(args):
    time.sleep(args.scalar(0))


def knap(args, chip):
    time.sleep(args.scalar(0))


def new_worker(**kw):
    w = tf.Worker(level=3, **kw)
    h = {"nap": w.register_sub(nap), "knap": w.register_kernel(knap)}
    return w, h


def none_running(pids):
    return not any(process_running(p) for p in pids)


@pytest.mark.timeout(60)
def test_close_leaves_no_child_process():
    before = children_of(os.getpid())
    w, h = new_worker(chips=2, sub_workers=2)
    w.init()
    pids = list(w.pids().values())
    assert len(pids) == 4 and all(process_running(p) for p in pids)
    w.submit_sub(h["nap"], tf.TaskArgs().scalar(0.05))
    w.submit_next_level(h["knap"], tf.TaskArgs().scalar(0.05))
    w.close()
    assert none_running(pids), [p for p in pids if process_running(p)]
    # Nothing else we forked (e.g. a fork server) survives either.
    assert wait_until(lambda: children_of(os.getpid()) <= before, timeout=5)


def zombies_of(pid):
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                out.add(int(name))
    return out


@pytest.mark.timeout(60)
def test_close_reaps_what_it_forked_no_zombie_is_left():
    zombies = zombies_of(os.getpid())
    kids = children_of(os.getpid())
    w, h = new_worker(chips=1, sub_workers=1)
    w.init()
    forked = children_of(os.getpid()) - kids
    assert forked, "init() forked nothing under this process"
    w.close()
    assert wait_until(lambda: zombies_of(os.getpid()) <= zombies, timeout=5), zombies_of(os.getpid())
    for pid in forked:
        assert not os.path.exists(f"/proc/{pid}") or not process_running(pid)


@pytest.mark.timeout(60)
def test_every_call_after_close_raises_worker_closed():
    w, h = new_worker(chips=1, sub_workers=1)
    w.init()
    t = w.submit_sub(h["nap"], tf.TaskArgs().scalar(0.0))
    w.close()
    calls = {
        "submit_sub": lambda: w.submit_sub(h["nap"], tf.TaskArgs().scalar(0.0)),
        "submit_next_level": lambda: w.submit_next_level(h["knap"], tf.TaskArgs().scalar(0.0)),
        "submit_group": lambda: w.submit_group(h["knap"], [tf.TaskArgs().scalar(0.0)]),
        "scope": lambda: w.scope().__enter__(),
        "drain": lambda: w.drain(),
        "run": lambda: w.run(lambda o, a: None),
        "alloc": lambda: w.alloc(4),
        "share": lambda: w.share(np.zeros(2)),
        "init": lambda: w.init(),
        "register_sub": lambda: w.register_sub(nap),
        "register_kernel": lambda: w.register_kernel(knap),
        "stats": lambda: w.stats(),
        "pids": lambda: w.pids(),
    }
    for name, call in calls.items():
        with pytest.raises(tf.WorkerClosed):
            call()
    # Its tasks stay queryable (contract section 4).
    assert (t.state, t.done(), t.running(), t.cancelled()) == ("consumed", True, False, False)
    assert t.result(timeout=0) is None and t.exception() is None
    assert issubclass(tf.WorkerClosed, RuntimeError)
    w.close()  # idempotent


@pytest.mark.timeout(60)
def test_exception_inside_with_cleans_up_and_propagates():
    w, h = new_worker(chips=2, sub_workers=1)
    pids = []
    with pytest.raises(LookupError, match="inside with"):
        with w:
            pids = list(w.pids().values())
            w.submit_sub(h["nap"], tf.TaskArgs().scalar(0.2))
            w.submit_next_level(h["knap"], tf.TaskArgs().scalar(0.2))
            raise LookupError("inside with")
    assert len(pids) == 3
    assert wait_until(lambda: none_running(pids), timeout=10)
    with pytest.raises(tf.WorkerClosed):
        w.submit_sub(h["nap"], tf.TaskArgs().scalar(0.0))


@pytest.mark.timeout(60)
def test_close_with_failures_pending_still_cleans_up():
    w = tf.Worker(level=3, sub_workers=2)
    bad = w.register_sub(lambda a: 1 / 0)
    w.init()
    pids = list(w.pids().values())
    for _ in range(3):
        w.submit_sub(bad)
    w.close()  # failures never drained: close still succeeds
    assert none_running(pids)


@pytest.mark.timeout(60)
def test_garbage_collected_worker_stops_its_children():
    w, h = new_worker(chips=1, sub_workers=1)
    w.init()
    pids = list(w.pids().values())
    del w, h
    gc.collect()
    assert wait_until(lambda: none_running(pids), timeout=15)


def run_script(body, timeout=60):
    script = textwrap.dedent("""
        import os, sys, time
        import numpy as np
        import tierflow as tf
        def nap(args):
            time.sleep(args.scalar(0))
        w = tf.Worker(level=3, chips=2, sub_workers=2)
        h = w.register_sub(nap)
        w.init()
        print(" ".join(str(p) for p in w.pids().values()), flush=True)
        print(os.getpid(), flush=True)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def child_pids(out):
    lines = out.split("\n")
    return [int(x) for x in lines[0].split()]


@pytest.mark.timeout(120)
def test_interpreter_exit_without_close_leaves_no_child():
    p = run_script("w.submit_sub(h, tf.TaskArgs().scalar(0.01))\n")
    assert p.returncode == 0, p.stderr
    pids = child_pids(p.stdout)
    assert len(pids) == 4
    assert wait_until(lambda: none_running(pids), timeout=10), [x for x in pids if process_running(x)]


@pytest.mark.timeout(120)
def test_interpreter_exit_with_a_long_task_running_leaves_no_child():
    p = run_script("w.submit_sub(h, tf.TaskArgs().scalar(60.0))\ntime.sleep(0.2)\n")
    assert p.returncode == 0, p.stderr
    pids = child_pids(p.stdout)
    assert wait_until(lambda: none_running(pids), timeout=10), [x for x in pids if process_running(x)]


@pytest.mark.timeout(120)
def test_sys_exit_with_an_error_code_leaves_no_child():
    p = run_script("sys.exit(5)\n")
    assert p.returncode == 5, p.stderr
    pids = child_pids(p.stdout)
    assert wait_until(lambda: none_running(pids), timeout=10)


@pytest.mark.timeout(120)
def test_uncaught_exception_in_the_parent_leaves_no_child():
    p = run_script("raise SystemError('parent bails out')\n")
    assert p.returncode != 0 and "parent bails out" in p.stderr
    pids = child_pids(p.stdout)
    assert wait_until(lambda: none_running(pids), timeout=10)


@pytest.mark.timeout(120)
def test_parent_killed_by_sigkill_leaves_no_child():
    p = run_script("w.submit_sub(h, tf.TaskArgs().scalar(60.0))\ntime.sleep(0.2)\n"
                   "os.kill(os.getpid(), 9)\n")
    assert p.returncode == -signal.SIGKILL
    pids = child_pids(p.stdout)
    assert len(pids) == 4
    assert wait_until(lambda: none_running(pids), timeout=15), [x for x in pids if process_running(x)]
