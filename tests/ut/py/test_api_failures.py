"""Failures (contract section 6): exceptions, dependency failures, reports."""
import time

import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(sub_workers=2, chips=1, window=32)

    @w.sub
    def boom(args):
        raise ValueError(f"bad value {args.scalar(0)}")

    @w.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    @w.kernel
    def kboom(args, chip):
        raise RuntimeError("kernel broke")

    w.init()
    w.h = dict(boom=boom, copy=copy, kboom=kboom)
    return w


def test_exception_fails_task_with_traceback(w):
    a = w.alloc(4)
    t = w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(42))
    with pytest.raises(tf.TaskError) as e:
        t.wait(timeout=10)
    f = e.value.failures[0]
    assert (f.task_id, f.kind) == (t.id, "exception")
    assert f.worker in ("sub 0", "sub 1")
    assert f.message == "ValueError: bad value 42"
    assert "Traceback" in f.traceback and "raise ValueError" in f.traceback
    assert f.cause_task_id is None
    assert "bad value 42" in str(e.value.__cause__)
    assert t.state == "failed" and t.done()
    assert isinstance(t.exception(), tf.TaskError)
    with pytest.raises(tf.TaskError):
        w.drain()


def test_dependents_fail_transitively_with_the_root_cause_and_others_run(w):
    a, b, c, d, e = (w.alloc(4) for _ in range(5))
    root = w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(1))
    mid = w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b))
    leaf = w.submit_sub(w.h["copy"], tf.TaskArgs().input(b).output(c))
    d[:] = 5
    free = w.submit_sub(w.h["copy"], tf.TaskArgs().input(d).output(e))
    with pytest.raises(tf.TaskError) as err:
        w.drain()
    by_id = {f.task_id: f for f in err.value.failures}
    assert set(by_id) == {root.id, mid.id, leaf.id}
    assert by_id[mid.id].kind == by_id[leaf.id].kind == "dependency_failed"
    assert by_id[mid.id].cause_task_id == by_id[leaf.id].cause_task_id == root.id
    assert free.state in ("completed", "consumed") and np.all(e == 5)
    for t in (root, mid, leaf):
        assert t.state == "failed"


def test_failures_are_reported_once_and_the_worker_stays_usable(w):
    a = w.alloc(4)
    w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(1))
    with pytest.raises(tf.TaskError):
        w.drain()
    w.drain()  # nothing new
    b, c = w.share(np.ones(4, np.float32)), w.alloc(4)
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(b).output(c))
    w.drain()
    assert np.all(c == 1)


def test_bytes_of_a_failed_task_poison_later_readers_until_drain(w):
    a, b = w.alloc(4), w.alloc(4)
    t = w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(1))
    t.exception(timeout=10)
    time.sleep(0.05)  # let the failed task be retired
    late = w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b))
    f = late.exception(timeout=10).failures[0]
    assert f.kind == "dependency_failed" and f.cause_task_id == t.id
    with pytest.raises(tf.TaskError):
        w.drain()
    a[:] = 2  # reported: the bytes are the user's again
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b))
    w.drain()
    assert np.all(b == 2)


def test_chip_kernel_exception(w):
    t = w.submit_next_level(w.h["kboom"])
    f = t.exception(timeout=10).failures[0]
    assert f.worker == "chip 0" and f.message == "RuntimeError: kernel broke"
    with pytest.raises(tf.TaskError):
        w.run(lambda o, a: None)


def test_task_error_lists_every_failure(w):
    ts = [w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(i)) for i in range(3)]
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert sorted(f.task_id for f in e.value.failures) == sorted(t.id for t in ts)
    assert "and 2 more" in str(e.value)
