"""tf.Task as a future (contract section 4): result(), running(),
cancelled(), cancel(), add_done_callback(), exception(timeout), tf.wait and
tf.as_completed with concurrent.futures semantics, and a Task that outlives
its Worker."""
import threading
import time

import numpy as np
import pytest

import tierflow as tf


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=2, chips=1, window=64)

    @w.sub
    def nap(args):
        time.sleep(args.scalar(0))
        if args.num_tensors:
            args.tensor(0)[...] = 1

    @w.sub
    def value(args):
        kind = args.scalar(0)
        if kind == 0:
            return {"answer": 42, "list": [1, 2, 3]}
        if kind == 1:
            return Point(3, 4)
        if kind == 2:
            return np.arange(5)
        if kind == 3:
            return b"x" * args.scalar(1)
        if kind == 4:
            return lambda: None  # does not pickle
        return None

    @w.kernel
    def kvalue(args, chip):
        return ("chip", chip.chip_id)

    @w.sub
    def boom(args):
        raise ValueError("boom")

    @w.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    w.init()
    w.h = dict(nap=nap, value=value, kvalue=kvalue, boom=boom, copy=copy)
    return w


def nap(w, seconds, *tensors):
    args = tf.TaskArgs().scalar(float(seconds))
    for t in tensors:
        args.output(t)
    return w.submit_sub(w.h["nap"], args)


@pytest.mark.timeout(60)
def test_result_returns_what_the_callable_returned(w):
    assert w.submit_sub(w.h["value"], tf.TaskArgs().scalar(0)).result(timeout=30) == {"answer": 42,
                                                                                       "list": [1, 2, 3]}
    p = w.submit_sub(w.h["value"], tf.TaskArgs().scalar(1)).result(timeout=30)
    assert isinstance(p, Point) and (p.x, p.y) == (3, 4)
    np.testing.assert_array_equal(w.submit_sub(w.h["value"], tf.TaskArgs().scalar(2)).result(), np.arange(5))
    assert w.submit_sub(w.h["value"], tf.TaskArgs().scalar(9)).result() is None
    assert w.submit_next_level(w.h["kvalue"], worker=0).result(timeout=30) == ("chip", 0)
    t = w.submit_sub(w.h["value"], tf.TaskArgs().scalar(0))
    assert t.result() is t.result(), "every call returns the same object"
    w.drain()


@pytest.mark.timeout(60)
def test_a_result_too_large_or_unpicklable_fails_with_a_clear_error(w):
    big = w.submit_sub(w.h["value"], tf.TaskArgs().scalar(3).scalar(1 << 20))
    with pytest.raises(tf.TaskError) as e:
        big.result(timeout=30)
    msg = e.value.failures[0].message
    assert "at most" in msg and "output tensor" in msg, msg
    fits = w.submit_sub(w.h["value"], tf.TaskArgs().scalar(3).scalar(32 * 1024))
    assert fits.result(timeout=30) == b"x" * (32 * 1024)
    bad = w.submit_sub(w.h["value"], tf.TaskArgs().scalar(4))
    assert bad.exception(timeout=30).failures[0].kind == "exception"
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_running_done_and_state_follow_the_task(w):
    t = nap(w, 0.5)
    deadline = time.monotonic() + 20
    while not t.running() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert t.running() and t.state == "running" and not t.done()
    assert t.result(timeout=30) is None
    assert t.done() and not t.running() and not t.cancelled()


@pytest.mark.timeout(60)
def test_exception_waits_and_times_out(w):
    t = nap(w, 1.0)
    with pytest.raises(TimeoutError):
        t.exception(timeout=0.05)
    with pytest.raises(TimeoutError):
        t.result(timeout=0.05)
    assert t.exception(timeout=30) is None
    b = w.submit_sub(w.h["boom"])
    err = b.exception(timeout=30)
    assert isinstance(err, tf.TaskError) and type(err.__cause__) is ValueError
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_cancel_a_pending_task_fails_it_and_its_readers_as_cancelled_at_once(w):
    x, y, z = w.alloc(4), w.alloc(4), w.alloc(4)
    first = nap(w, 1.0, x)  # victim waits on it
    victim = w.submit_sub(w.h["copy"], tf.TaskArgs().input(x).output(y))
    reader = w.submit_sub(w.h["copy"], tf.TaskArgs().input(y).output(z))
    overwriter = w.submit_sub(w.h["nap"], tf.TaskArgs().scalar(0.0).output(y))  # only overwrites y: runs
    assert victim.state == "pending"
    t0 = time.monotonic()
    assert victim.cancel() is True
    assert victim.cancel() is True  # already cancelled
    victim.exception(timeout=30)
    assert time.monotonic() - t0 < 0.9, "a cancelled task must not wait for its producers"
    assert victim.cancelled() and victim.done() and victim.state == "cancelled"
    f = victim.exception().failures[0]
    assert f.kind == "cancelled" and "cancel" in f.message
    fr = reader.exception(timeout=30).failures[0]
    assert fr.kind == "cancelled" and fr.cause_task_id == victim.id
    assert overwriter.exception(timeout=30) is None and not first.cancelled()
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert {f.task_id: f.kind for f in e.value.failures} == {victim.id: "cancelled", reader.id: "cancelled"}


@pytest.mark.timeout(60)
def test_cancel_returns_false_for_running_and_finished_tasks(w):
    t = nap(w, 0.5)
    while not t.running():
        time.sleep(0.002)
    assert t.cancel() is False and not t.cancelled()
    t.wait(timeout=30)
    assert t.cancel() is False
    q = [nap(w, 0.0) for _ in range(20)]
    w.drain()
    assert not any(x.cancel() for x in q)


@pytest.mark.timeout(60)
def test_cancel_a_queued_task(w):
    blockers = [nap(w, 0.5) for _ in range(2)]  # both sub-workers busy
    queued = nap(w, 0.0)
    assert queued.cancel() is True
    assert queued.exception(timeout=30).failures[0].kind == "cancelled"
    for b in blockers:
        b.wait(timeout=30)
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_done_callbacks_run_once_each_in_order_of_registration(w):
    seen = []
    lock = threading.Lock()
    done = threading.Event()

    def cb(name):
        def f(task):
            with lock:
                seen.append((name, task.id, task.done()))
                if len(seen) == 3:
                    done.set()
        return f

    t = nap(w, 0.3)
    t.add_done_callback(cb("a"))
    t.add_done_callback(cb("b"))
    t.wait(timeout=30)
    fin = nap(w, 0.0)
    fin.wait(timeout=30)
    fin.add_done_callback(cb("now"))  # already done: called at once, in this thread
    assert done.wait(30)
    assert [s[0] for s in seen if s[1] == t.id] == ["a", "b"]
    assert all(s[2] for s in seen) and ("now", fin.id, True) in seen


@pytest.mark.timeout(60)
def test_a_callback_that_raises_is_logged_and_the_rest_still_run(w, caplog):
    got = threading.Event()
    t = nap(w, 0.1)
    t.add_done_callback(lambda task: 1 / 0)
    t.add_done_callback(lambda task: got.set())
    assert got.wait(30)
    assert any("done callback" in r.message for r in caplog.records)


@pytest.mark.timeout(60)
def test_as_completed_yields_in_finishing_order(w):
    slow, fast = nap(w, 0.6), nap(w, 0.05)
    order = [t.id for t in tf.as_completed([slow, fast], timeout=30)]
    assert order == [fast.id, slow.id]
    with pytest.raises(TimeoutError):
        list(tf.as_completed([nap(w, 2.0)], timeout=0.1))
    w.drain()


@pytest.mark.timeout(60)
def test_wait_all_first_completed_and_first_exception(w):
    a, b = nap(w, 0.05), nap(w, 0.8)
    done, not_done = tf.wait([a, b], return_when=tf.FIRST_COMPLETED, timeout=30)
    assert a in done and b in not_done
    done, not_done = tf.wait([a, b], timeout=30)
    assert done == {a, b} and not not_done
    boom, slow = w.submit_sub(w.h["boom"]), nap(w, 1.5)
    done, not_done = tf.wait([boom, slow], return_when=tf.FIRST_EXCEPTION, timeout=30)
    assert boom in done and slow in not_done
    done, not_done = tf.wait([nap(w, 2.0)], timeout=0.05)
    assert not done and len(not_done) == 1
    with pytest.raises(ValueError):
        tf.wait([a], return_when="SOMETIMES")
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_a_task_stays_queryable_after_its_worker_closed(worker_factory):
    w = worker_factory(sub_workers=1)
    ok = w.register_sub(lambda args: "kept")
    bad = w.register_sub(lambda args: 1 / 0)
    w.init()
    t, f = w.submit_sub(ok), w.submit_sub(bad)
    w.close()
    assert t.done() and t.state == "consumed" and t.result() == "kept"
    assert f.state == "failed" and isinstance(f.exception(), tf.TaskError)
    with pytest.raises(tf.TaskError):
        f.result()
    assert repr(t).startswith("<tf.Task")
