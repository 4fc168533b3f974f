"""Scopes, back-pressure and WindowExhausted."""
import threading
import time

import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(sub_workers=2, window=4)

    @w.sub
    def nap(args):
        time.sleep(args.scalar(0))

    @w.sub
    def inc(args):
        args.tensor(0)[...] += 1

    w.init()
    w.h = dict(nap=nap, inc=inc)
    return w


@pytest.mark.timeout(60)
def test_submit_blocks_while_the_window_is_full(w):
    for _ in range(4):
        w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.3))
    t0 = time.monotonic()
    w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0))  # waits for a slot
    assert time.monotonic() - t0 > 0.1
    assert w.stats()["live_tasks"] <= 4
    w.drain()


@pytest.mark.timeout(60)
def test_one_scope_holding_the_whole_window_raises_at_once(w):
    with w.scope():
        with w.scope():
            for _ in range(4):
                w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0))
            w.drain()
            t0 = time.monotonic()
            with pytest.raises(tf.WindowExhausted) as e:
                w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0))
            assert time.monotonic() - t0 < 1.0
            assert isinstance(e.value, RuntimeError)
            assert "4" in str(e.value) and "scope depth 2" in str(e.value)
    w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0))  # scopes ended: slots free again
    w.drain()


@pytest.mark.timeout(60)
def test_scope_holds_finished_tasks_until_it_ends_and_never_blocks(w):
    x = w.alloc(1, np.int64)
    x[:] = 0
    with w.scope():
        t0 = time.monotonic()
        ts = [w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x)) for _ in range(3)]
        w.drain()
        assert [t.state for t in ts] == ["completed"] * 3
        assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while any(t.state != "consumed" for t in ts) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.state for t in ts] == ["consumed"] * 3
    assert x[0] == 3


@pytest.mark.timeout(60)
def test_outside_a_scope_tasks_retire_as_soon_as_they_finish(w):
    t = w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0))
    t.wait(timeout=10)
    deadline = time.monotonic() + 5
    while t.state != "consumed" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.state == "consumed" and t.done()


@pytest.mark.timeout(60)
def test_states_move_from_pending_to_running(w):
    x = w.alloc(1)
    first = w.submit_sub(w.h["nap"], tf.TaskArgs().inout(x).scalar(0.5))
    second = w.submit_sub(w.h["nap"], tf.TaskArgs().inout(x).scalar(0.0))
    deadline = time.monotonic() + 5
    while first.state != "running" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.state == "running" and second.state == "pending"
    assert not second.done()
    second.wait(timeout=10)
    assert first.done()


@pytest.mark.timeout(60)
def test_many_tasks_through_a_small_window_from_two_scopes(w):
    x = w.alloc(8, np.int64)
    x[:] = 0
    for _ in range(50):
        with w.scope():
            w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x[:4]))
            w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x[4:]))
    w.drain()
    assert np.all(x == 50)


@pytest.mark.timeout(60)
def test_task_wait_timeout(w):
    t = w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(1.0))
    with pytest.raises(TimeoutError):
        t.wait(timeout=0.05)
    with pytest.raises(TimeoutError, match="running: task"):
        w.drain(timeout=0.05)
    w.drain()
