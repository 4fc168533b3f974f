"""Ctrl-C during drain(): KeyboardInterrupt arrives promptly and close() still
cleans up every child."""
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import process_running

SCRIPT = textwrap.dedent("""
    import os, time
    import tierflow as tf
    w = tf.Worker(level=3, sub_workers=2, chips=1)
    @w.sub
    def slow(args):
        time.sleep(30)
    with w:
        for _ in range(10):
            w.submit_sub(slow)
        print(" ".join(str(p) for p in w.pids().values()), flush=True)
        try:
            w.drain()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
""")



@pytest.mark.timeout(60)
def test_sigint_during_drain_returns_within_two_seconds_and_cleans_up():
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = [int(x) for x in p.stdout.readline().split()]
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    elapsed = time.monotonic() - t0
    assert "interrupted" in out
    assert "KeyboardInterrupt" in err
    assert p.returncode != 0
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert [x for x in pids if process_running(x)] == []


def _interrupt_soon(delay=0.3):
    import os
    import threading
    t = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
    t.start()
    return t


def slow(args):
    time.sleep(args.scalar(0))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["drain", "wait", "run"])
def test_ctrl_c_cancels_what_has_not_started_and_stops_what_runs(worker_factory, how):
    import tierflow as tf
    w = worker_factory(sub_workers=2)
    h = w.register_sub(slow)
    w.init()
    pids = w.pids()
    running = [w.submit_sub(h, tf.TaskArgs().scalar(30.0)) for _ in range(2)]
    queued = [w.submit_sub(h, tf.TaskArgs().scalar(0.5)) for _ in range(1000)]
    assert all(wait_for_running(t) for t in running)
    _interrupt_soon()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        if how == "drain":
            w.drain()
        elif how == "wait":
            queued[-1].wait()
        else:
            w.run(lambda orch, args: None)
    assert time.monotonic() - t0 < 10  # generous: the contract says 2 s
    assert all(t.cancelled() and t.state == "cancelled" for t in queued)
    assert all(t.done() and t.state == "cancelled" for t in running), [t.state for t in running]
    with pytest.raises(tf.TaskError) as e:
        w.drain(timeout=10)
    kinds = {f.kind for f in e.value.failures}
    assert kinds == {"cancelled"}, kinds
    assert "KeyboardInterrupt" in e.value.failures[0].message
    # The Worker stays usable: the stopped children were replaced.
    t = w.submit_sub(h, tf.TaskArgs().scalar(0.0))
    t.wait(timeout=30)
    assert t.state in ("completed", "consumed")
    assert w.pids().keys() == pids.keys()
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < 5


def wait_for_running(t, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not t.running():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.timeout(60)
def test_close_with_cancel_cancels_pending_and_stops_running_work(worker_factory):
    import tierflow as tf
    w = worker_factory(sub_workers=1)
    h = w.register_sub(slow)
    w.init()
    pids = list(w.pids().values())
    running = w.submit_sub(h, tf.TaskArgs().scalar(30.0))
    queued = [w.submit_sub(h, tf.TaskArgs().scalar(1.0)) for _ in range(50)]
    assert wait_for_running(running)
    t0 = time.monotonic()
    w.close(cancel=True)
    assert time.monotonic() - t0 < 10
    assert running.state == "cancelled" and all(t.state == "cancelled" for t in queued)
    assert running.exception().failures[0].kind == "cancelled"
    assert [p for p in pids if process_running(p)] == []


@pytest.mark.timeout(60)
def test_ctrl_c_in_a_submit_blocked_on_the_window_cancels_too(worker_factory):
    import tierflow as tf
    w = worker_factory(sub_workers=1, window=4)
    h = w.register_sub(slow)
    w.init()
    held = [w.submit_sub(h, tf.TaskArgs().scalar(30.0)) for _ in range(4)]  # fills the window
    assert wait_for_running(held[0])
    _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        w.submit_sub(h, tf.TaskArgs().scalar(0.0))  # blocks: no free slot
    assert all(t.state == "cancelled" for t in held)
    with pytest.raises(tf.TaskError):
        w.drain(timeout=10)
