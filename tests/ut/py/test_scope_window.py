"""Scopes and the window (contract sections 1, 4, 6): back-pressure when
`window` tasks are live, tf.WindowExhausted when the submitter's own scopes
hold every slot, scopes that never block."""
import threading
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import wait_until


def gated(args):
    """Waits until gate (tensor 0, no_dep) is open, then increments tensor 1 if any."""
    gate = args.tensor(0)
    deadline = time.monotonic() + 30
    while gate[0] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.001)
    if args.num_tensors > 1:
        args.tensor(1)[...] += 1


def inc(args):
    args.tensor(0)[...] += 1


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=2, chips=1, window=4)
    w.h = {"gated": w.register_sub(gated), "inc": w.register_sub(inc), "kinc": w.register_kernel(lambda a, c: inc(a))}
    w.init()
    w.gate = w.alloc(1, np.int32)
    w.gate[:] = 0
    return w


def gated_args(w, out=None):
    a = tf.TaskArgs().no_dep(w.gate)
    return a.inout(out) if out is not None else a


@pytest.mark.timeout(60)
def test_submit_beyond_the_window_blocks_until_a_slot_frees(w):
    for _ in range(4):
        w.submit_sub(w.h["gated"], gated_args(w))
    done = threading.Event()
    errors = []

    def fifth():
        try:
            w.submit_sub(w.h["inc"], tf.TaskArgs().inout(w.alloc(1)))
        except BaseException as e:
            errors.append(e)
        done.set()

    th = threading.Thread(target=fifth)
    th.start()
    assert not done.wait(0.5), "the submit did not wait for a free slot"
    assert w.stats()["live_tasks"] <= 4
    w.gate[0] = 1
    assert done.wait(30) and errors == []
    th.join(10)
    w.drain(timeout=30)


@pytest.mark.timeout(60)
def test_many_tasks_flow_through_a_small_window(w):
    x = w.share(np.zeros(4, np.int64))
    live_max = 0
    for i in range(300):
        if i % 3 == 2:
            w.submit_next_level(w.h["kinc"], tf.TaskArgs().inout(x[i % 4:i % 4 + 1]))
        else:
            w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x[i % 4:i % 4 + 1]))
        live_max = max(live_max, w.stats()["live_tasks"])
    w.drain(timeout=60)
    assert list(x) == [75, 75, 75, 75]
    assert live_max <= 4


@pytest.mark.timeout(60)
@pytest.mark.parametrize("window, depth", [(4, 1), (4, 2), (6, 3)])
def test_one_scope_holding_the_window_raises_window_exhausted_at_once(worker_factory, window, depth):
    w = worker_factory(sub_workers=1, window=window)
    h = w.register_sub(inc)
    w.init()
    x = w.alloc(1)
    scopes = [w.scope() for _ in range(depth)]
    for s in scopes:
        s.__enter__()
    try:
        for _ in range(window):
            w.submit_sub(h, tf.TaskArgs().inout(x))
        w.drain(timeout=30)  # all finished, but the open scopes keep them
        with pytest.raises(tf.WindowExhausted) as e:
            w.submit_sub(h, tf.TaskArgs().inout(x))  # would wait forever; must raise now
    finally:
        for s in reversed(scopes):
            s.__exit__(None, None, None)
    assert isinstance(e.value, RuntimeError)
    msg = str(e.value)
    assert str(window) in msg and "depth" in msg and f"depth {depth}" in msg, msg
    w.submit_sub(h, tf.TaskArgs().inout(x))  # the scopes ended: slots are free again
    w.drain(timeout=30)
    assert x[0] == window + 1


@pytest.mark.timeout(60)
def test_window_exhausted_also_when_scoped_tasks_are_still_running(w):
    with w.scope():
        for _ in range(4):
            w.submit_sub(w.h["gated"], gated_args(w))
        try:
            with pytest.raises(tf.WindowExhausted):
                w.submit_sub(w.h["inc"], tf.TaskArgs().inout(w.alloc(1)))
        finally:
            w.gate[0] = 1
    w.drain(timeout=30)


@pytest.mark.timeout(60)
def test_submit_blocks_instead_of_raising_when_slots_will_free(w):
    x = w.alloc(1)
    x[:] = 0
    outside = [w.submit_sub(w.h["gated"], gated_args(w)) for _ in range(2)]  # will retire
    opener = threading.Timer(0.3, lambda: w.gate.__setitem__(0, 1))
    with w.scope():
        w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x))
        w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x))
        opener.start()
        w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x))  # 5th live task: waits for the outside ones
    opener.join()
    w.drain(timeout=30)
    assert x[0] == 3 and all(t.done() for t in outside)


@pytest.mark.timeout(60)
def test_scope_exit_never_blocks_on_unfinished_tasks(w):
    out = w.alloc(1, np.int64)
    out[:] = 0
    with w.scope():
        with w.scope():
            t = w.submit_sub(w.h["gated"], gated_args(w, out))
        assert w.gate[0] == 0 and not t.done()
    assert w.gate[0] == 0 and not t.done()  # we left both scopes while the task was still waiting
    w.gate[0] = 1
    w.drain(timeout=30)
    assert out[0] == 1


@pytest.mark.timeout(60)
def test_a_scope_retires_its_tasks_together_when_it_ends(w):
    x = w.alloc(1, np.int64)
    with w.scope():
        ts = [w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x)) for _ in range(3)]
        for t in ts:
            t.wait(timeout=30)
        time.sleep(0.1)
        assert [t.state for t in ts] == ["completed"] * 3  # held by the open scope
    assert wait_until(lambda: all(t.state == "consumed" for t in ts), timeout=10), [t.state for t in ts]
    assert all(t.done() for t in ts)


@pytest.mark.timeout(60)
def test_a_task_outside_any_scope_becomes_consumed(w):
    t = w.submit_sub(w.h["inc"], tf.TaskArgs().inout(w.alloc(1)))
    t.wait(timeout=30)
    assert wait_until(lambda: t.state == "consumed", timeout=10), t.state
    assert t.done()


@pytest.mark.timeout(60)
def test_task_states_pending_running_completed(w):
    x = w.alloc(1, np.int64)
    first = w.submit_sub(w.h["gated"], gated_args(w, x))
    second = w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x))
    assert wait_until(lambda: first.state == "running", timeout=10), first.state
    assert second.state == "pending" and not second.done() and not first.done()
    w.gate[0] = 1
    second.wait(timeout=30)
    assert first.done() and second.done()
    assert first.state in ("completed", "consumed") and second.state in ("completed", "consumed")


@pytest.mark.timeout(60)
def test_nested_scopes_and_scope_per_iteration(w):
    x = w.share(np.zeros(2, np.int64))
    for _ in range(40):
        with w.scope():
            w.submit_sub(w.h["inc"], tf.TaskArgs().inout(x[:1]))
            with w.scope():
                w.submit_next_level(w.h["kinc"], tf.TaskArgs().inout(x[1:]))
    w.drain(timeout=60)
    assert list(x) == [40, 40]


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(sub_workers=2, window=4)

    @wk.sub
    def nap(args):
        time.sleep(args.scalar(0))

    @wk.sub
    def inc(args):
        args.tensor(0)[...] += 1

    wk.init()
    wk.h = dict(nap=nap, inc=inc)
    return wk


@pytest.mark.timeout(60)
def test_submit_blocks_while_the_window_is_full(wk):
    for _ in range(4):
        wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.3))
    t0 = time.monotonic()
    wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.0))  # waits for a slot
    assert time.monotonic() - t0 > 0.1
    assert wk.stats()["live_tasks"] <= 4
    wk.drain()


@pytest.mark.timeout(60)
def test_one_scope_holding_the_whole_window_raises_at_once(wk):
    with wk.scope():
        with wk.scope():
            for _ in range(4):
                wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.0))
            wk.drain()
            t0 = time.monotonic()
            with pytest.raises(tf.WindowExhausted) as e:
                wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.0))
            assert time.monotonic() - t0 < 1.0
            assert isinstance(e.value, RuntimeError)
            assert "4" in str(e.value) and "scope depth 2" in str(e.value)
    wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.0))  # scopes ended: slots free again
    wk.drain()


@pytest.mark.timeout(60)
def test_scope_holds_finished_tasks_until_it_ends_and_never_blocks(wk):
    x = wk.alloc(1, np.int64)
    x[:] = 0
    with wk.scope():
        t0 = time.monotonic()
        ts = [wk.submit_sub(wk.h["inc"], tf.TaskArgs().inout(x)) for _ in range(3)]
        wk.drain()
        assert [t.state for t in ts] == ["completed"] * 3
        assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while any(t.state != "consumed" for t in ts) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t.state for t in ts] == ["consumed"] * 3
    assert x[0] == 3


@pytest.mark.timeout(60)
def test_outside_a_scope_tasks_retire_as_soon_as_they_finish(wk):
    t = wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(0.0))
    t.wait(timeout=10)
    deadline = time.monotonic() + 5
    while t.state != "consumed" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.state == "consumed" and t.done()


@pytest.mark.timeout(60)
def test_states_move_from_pending_to_running(wk):
    x = wk.alloc(1)
    first = wk.submit_sub(wk.h["nap"], tf.TaskArgs().inout(x).scalar(0.5))
    second = wk.submit_sub(wk.h["nap"], tf.TaskArgs().inout(x).scalar(0.0))
    deadline = time.monotonic() + 5
    while first.state != "running" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert first.state == "running" and second.state == "pending"
    assert not second.done()
    second.wait(timeout=10)
    assert first.done()


@pytest.mark.timeout(60)
def test_many_tasks_through_a_small_window_from_two_scopes(wk):
    x = wk.alloc(8, np.int64)
    x[:] = 0
    for _ in range(50):
        with wk.scope():
            wk.submit_sub(wk.h["inc"], tf.TaskArgs().inout(x[:4]))
            wk.submit_sub(wk.h["inc"], tf.TaskArgs().inout(x[4:]))
    wk.drain()
    assert np.all(x == 50)


@pytest.mark.timeout(60)
def test_task_wait_timeout(wk):
    t = wk.submit_sub(wk.h["nap"], tf.TaskArgs().scalar(1.0))
    with pytest.raises(TimeoutError):
        t.wait(timeout=0.05)
    with pytest.raises(TimeoutError, match="running: task"):
        wk.drain(timeout=0.05)
    wk.drain()
