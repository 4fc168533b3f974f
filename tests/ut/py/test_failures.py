"""Task failures (contract section 6): an exception fails its task with the
traceback text, dependents fail as dependency_failed naming the root,
independent work continues, and the Worker stays usable."""
import time

import numpy as np
import pytest

import tierflow as tf


class CustomError(Exception):
    pass


def boom(args):
    raise CustomError(f"boom number {args.scalar(0)}")


def kboom(args, chip):
    raise ZeroDivisionError(f"kernel {chip.chip_id} divides by zero")


def copy_plus_one(args):
    args.tensor(1)[...] = args.tensor(0) + 1


def kcopy_plus_one(args, chip):
    copy_plus_one(args)


def nap_then_fill(args):
    time.sleep(args.scalar(0))
    args.tensor(0)[...] = args.scalar(1)


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=2, sub_workers=2, window=64)
    w.h = {"boom": w.register_sub(boom), "kboom": w.register_kernel(kboom),
           "copy": w.register_sub(copy_plus_one), "kcopy": w.register_kernel(kcopy_plus_one),
           "nap": w.register_sub(nap_then_fill)}
    w.init()
    return w


@pytest.mark.timeout(60)
def test_exception_marks_the_task_failed_with_traceback(w):
    out = w.alloc(4)
    t = w.submit_sub(w.h["boom"], tf.TaskArgs().output(out).scalar(17))
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert t.state == "failed" and t.done()
    [f] = e.value.failures
    assert isinstance(f, tf.Failure)
    assert f.task_id == t.id and f.kind == "exception" and f.cause_task_id is None
    assert f.worker in ("sub 0", "sub 1")
    assert "boom number 17" in f.message and "CustomError" in f.message
    assert "Traceback" in f.traceback and "boom number 17" in f.traceback and "def boom" not in f.message
    assert "raise CustomError" in f.traceback


@pytest.mark.timeout(60)
def test_failure_fields(w):
    t = w.submit_next_level(w.h["kboom"], worker=1)
    f = t.exception(timeout=30).failures[0]
    assert f._fields == ("task_id", "worker", "kind", "message", "traceback", "cause_task_id", "name", "attempts")
    assert f.worker == "chip 1" and f.kind == "exception"
    assert "kernel 1 divides by zero" in f.message and "ZeroDivisionError" in f.traceback
    task_id, worker, kind, message, traceback, cause, name, attempts = f  # tuple-like
    assert (task_id, worker, kind, name, attempts) == (t.id, "chip 1", "exception", t.name, 1)
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_task_wait_raises_task_error_and_exception_returns_it(w):
    t = w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(1))
    with pytest.raises(tf.TaskError) as e:
        t.wait(timeout=30)
    assert [f.task_id for f in e.value.failures] == [t.id]
    with pytest.raises(tf.TaskError):
        t.wait(timeout=30)  # again: a failed task keeps failing
    exc = t.exception(timeout=30)
    assert isinstance(exc, tf.TaskError) and exc.failures[0].task_id == t.id
    assert t.state == "failed"
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_successful_task_exception_is_none(w):
    out = w.alloc(4)
    t = w.submit_sub(w.h["nap"], tf.TaskArgs().output(out).scalar(0.0).scalar(2.0))
    assert t.exception(timeout=30) is None
    t.wait(timeout=30)
    assert t.done() and t.state in ("completed", "consumed")
    w.drain()


@pytest.mark.timeout(60)
def test_dependents_fail_transitively_naming_the_root(w):
    a, b, c, d = (w.alloc(8, np.float64) for _ in range(4))
    root = w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(0))
    t1 = w.submit_next_level(w.h["kcopy"], tf.TaskArgs().input(a).output(b))
    t2 = w.submit_sub(w.h["copy"], tf.TaskArgs().input(b).output(c))
    t3 = w.submit_next_level(w.h["kcopy"], tf.TaskArgs().input(c).output(d), worker=0)
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    by_id = {f.task_id: f for f in e.value.failures}
    assert set(by_id) == {root.id, t1.id, t2.id, t3.id}
    assert by_id[root.id].kind == "exception"
    for t in (t1, t2, t3):
        f = by_id[t.id]
        assert f.kind == "dependency_failed" and f.cause_task_id == root.id and f.worker is None
        assert t.state == "failed"
        assert t.exception(timeout=5).failures[0].cause_task_id == root.id


@pytest.mark.timeout(60)
def test_dependents_of_a_dependent_cite_the_first_failure(w):
    a, b = w.alloc(4), w.alloc(4)
    first = w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(1))
    second = w.submit_sub(w.h["boom"], tf.TaskArgs().inout(a).inout(b).scalar(2))  # never runs
    third = w.submit_sub(w.h["copy"], tf.TaskArgs().input(b).output(w.alloc(4)))
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    by_id = {f.task_id: f for f in e.value.failures}
    assert by_id[second.id].kind == "dependency_failed" and by_id[second.id].cause_task_id == first.id
    assert by_id[third.id].cause_task_id == first.id
    assert not any("boom number 2" in f.message for f in e.value.failures)  # second never ran


@pytest.mark.timeout(60)
def test_independent_work_continues(w):
    bad_out = w.alloc(4)
    w.submit_sub(w.h["boom"], tf.TaskArgs().output(bad_out).scalar(3))
    outs = [w.alloc(4, np.float64) for _ in range(12)]
    ts = []
    for i, o in enumerate(outs):
        ts.append(w.submit_sub(w.h["nap"], tf.TaskArgs().output(o).scalar(0.01).scalar(float(i))))
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert len(e.value.failures) == 1
    for i, o in enumerate(outs):
        assert np.all(o == i)
    assert all(t.state in ("completed", "consumed") for t in ts)


@pytest.mark.timeout(60)
def test_each_failure_is_reported_by_one_drain(w):
    t1 = w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(1))
    with pytest.raises(tf.TaskError) as e1:
        w.drain()
    w.drain()  # reported already: nothing raised
    t2 = w.submit_next_level(w.h["kboom"])
    t3 = w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(3))
    with pytest.raises(tf.TaskError) as e2:
        w.drain()
    assert [f.task_id for f in e1.value.failures] == [t1.id]
    assert sorted(f.task_id for f in e2.value.failures) == sorted([t2.id, t3.id])
    w.drain()
    assert t1.state == "failed"  # still, after being reported


@pytest.mark.timeout(60)
def test_worker_stays_usable_after_failures(w):
    for i in range(3):
        w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(i))
        w.submit_next_level(w.h["kboom"])
        with pytest.raises(tf.TaskError):
            w.drain()
    src = w.share(np.arange(6, dtype=np.float64))
    mid, dst = w.alloc(6, np.float64), w.alloc(6, np.float64)
    w.submit_next_level(w.h["kcopy"], tf.TaskArgs().input(src).output(mid))
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(mid).output(dst))
    w.drain()
    assert np.array_equal(dst, np.arange(6) + 2)
    st = w.stats()
    assert st["failed"] == 6 and st["completed"] >= 2


@pytest.mark.timeout(60)
def test_run_raises_task_error_for_failures_in_the_orch_function(w):
    def orch(o, args):
        o.submit_sub(w.h["boom"], tf.TaskArgs().scalar(args))

    with pytest.raises(tf.TaskError) as e:
        w.run(orch, 5)
    assert "boom number 5" in e.value.failures[0].message


@pytest.mark.timeout(60)
def test_task_error_message_and_failures_list(w):
    ts = [w.submit_sub(w.h["boom"], tf.TaskArgs().scalar(i)) for i in range(4)]
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert sorted(f.task_id for f in e.value.failures) == sorted(t.id for t in ts)
    assert all(isinstance(f, tf.Failure) for f in e.value.failures)
    assert "boom number" in str(e.value)


@pytest.mark.timeout(60)
def test_a_rewrite_after_a_reported_failure_runs_normally(w):
    a, b = w.alloc(4, np.float64), w.alloc(4, np.float64)
    w.submit_sub(w.h["boom"], tf.TaskArgs().output(a).scalar(0))
    with pytest.raises(tf.TaskError):
        w.drain()
    w.submit_sub(w.h["nap"], tf.TaskArgs().output(a).scalar(0.0).scalar(4.0))
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b))
    w.drain()
    assert np.all(b == 5.0)


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(sub_workers=2, chips=1, window=32)

    @wk.sub
    def boom(args):
        raise ValueError(f"bad value {args.scalar(0)}")

    @wk.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    @wk.sub
    def fill(args):
        args.tensor(0)[...] = args.scalar(0)

    @wk.kernel
    def kboom(args, chip):
        raise RuntimeError("kernel broke")

    wk.init()
    wk.h = dict(boom=boom, copy=copy, fill=fill, kboom=kboom)
    return wk


def test_exception_fails_task_with_traceback(wk):
    a = wk.alloc(4)
    t = wk.submit_sub(wk.h["boom"], tf.TaskArgs().output(a).scalar(42))
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
        wk.drain()


def test_dependents_fail_transitively_with_the_root_cause_and_others_run(wk):
    a, b, c, d, e = (wk.alloc(4) for _ in range(5))
    root = wk.submit_sub(wk.h["boom"], tf.TaskArgs().output(a).scalar(1))
    mid = wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).output(b))
    leaf = wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(b).output(c))
    d[:] = 5
    free = wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(d).output(e))
    with pytest.raises(tf.TaskError) as err:
        wk.drain()
    by_id = {f.task_id: f for f in err.value.failures}
    assert set(by_id) == {root.id, mid.id, leaf.id}
    assert by_id[mid.id].kind == by_id[leaf.id].kind == "dependency_failed"
    assert by_id[mid.id].cause_task_id == by_id[leaf.id].cause_task_id == root.id
    assert free.state in ("completed", "consumed") and np.all(e == 5)
    for t in (root, mid, leaf):
        assert t.state == "failed"


def test_failures_are_reported_once_and_the_worker_stays_usable(wk):
    a = wk.alloc(4)
    wk.submit_sub(wk.h["boom"], tf.TaskArgs().output(a).scalar(1))
    with pytest.raises(tf.TaskError):
        wk.drain()
    wk.drain()  # nothing new
    b, c = wk.share(np.ones(4, np.float32)), wk.alloc(4)
    wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(b).output(c))
    wk.drain()
    assert np.all(c == 1)


def test_bytes_of_a_failed_task_stay_poisoned_across_drains_until_overwritten(wk):
    a, b = wk.alloc(4), wk.alloc(4)
    t = wk.submit_sub(wk.h["boom"], tf.TaskArgs().output(a).scalar(1))
    t.exception(timeout=10)
    time.sleep(0.05)  # let the failed task be retired
    late = wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).output(b))
    f = late.exception(timeout=10).failures[0]
    assert f.kind == "dependency_failed" and f.cause_task_id == t.id
    with pytest.raises(tf.TaskError):
        wk.drain()
    # Reporting the failure does not make the bytes defined again...
    again = wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).output(b))
    assert again.exception(timeout=10).failures[0].cause_task_id == t.id
    with pytest.raises(tf.TaskError):
        wk.drain()
    # ...a task that overwrites them does, and what reads them afterwards runs.
    wk.submit_sub(wk.h["fill"], tf.TaskArgs().output(a).scalar(2.0))
    wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).output(b))
    wk.drain()
    assert np.all(b == 2)


def test_chip_kernel_exception(wk):
    t = wk.submit_next_level(wk.h["kboom"])
    f = t.exception(timeout=10).failures[0]
    assert f.worker == "chip 0" and f.message == "RuntimeError: kernel broke"
    with pytest.raises(tf.TaskError):
        wk.run(lambda o, a: None)


def test_task_error_lists_every_failure(wk):
    ts = [wk.submit_sub(wk.h["boom"], tf.TaskArgs().scalar(i)) for i in range(3)]
    with pytest.raises(tf.TaskError) as e:
        wk.drain()
    assert sorted(f.task_id for f in e.value.failures) == sorted(t.id for t in ts)
    assert "and 2 more" in str(e.value)


@pytest.mark.timeout(120)
def test_one_bad_item_in_a_pipeline_fails_only_that_item(make_worker):
    """Freed arena memory is a new allocation: items that reuse the bytes of
    the bad item's buffers must not inherit its failure."""
    w = make_worker(sub_workers=2, window=32)

    @w.sub
    def produce(args):
        if args.scalar(0) == 17:
            raise ValueError("bad item 17")
        args.tensor(0)[...] = args.scalar(0)

    @w.sub
    def consume(args):
        args.tensor(1)[...] = args.tensor(0) * 2

    w.init()
    results = w.alloc(200, np.float64)
    bad = []
    for i in range(200):
        a, b = w.alloc(16), w.alloc(16)
        p = w.submit_sub(produce, tf.TaskArgs().output(a).scalar(i))
        c = w.submit_sub(consume, tf.TaskArgs().input(a).output(b))
        w.submit_sub(consume, tf.TaskArgs().input(b[:1]).output(results[i:i + 1]))
        if i == 17:
            bad = [p.id, c.id]
        del a, b  # the next items get the same bytes back
    with pytest.raises(tf.TaskError) as e:
        w.drain(timeout=60)
    failed = sorted(f.task_id for f in e.value.failures)
    assert len(failed) == 3 and failed[:2] == bad, failed  # the bad item's three tasks, nothing else
    expected = np.arange(200) * 4.0
    expected[17] = results[17]
    assert np.array_equal(results, expected)
