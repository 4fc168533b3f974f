"""The keyword options of every submit (contract section 4): name=,
retries= with retry_on=, and timeout= (a per-task watchdog)."""
import time

import numpy as np
import pytest

import tierflow as tf


class Flaky(Exception):
    pass


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=2, chips=2)

    @w.sub
    def flaky(args):
        """Fails with Flaky until its counter (tensor 0) reaches scalar 0."""
        c = args.tensor(0)
        c[0] += 1
        if c[0] < args.scalar(0):
            raise Flaky(f"attempt {int(c[0])}")
        return int(c[0])

    @w.sub
    def always(args):
        raise KeyError("never retried unless asked")

    @w.sub
    def sleepy(args):
        time.sleep(args.scalar(0))
        return "woke"

    @w.kernel
    def ksleepy(args, chip):
        time.sleep(args.scalar(0))

    w.init()
    w.h = dict(flaky=flaky, always=always, sleepy=sleepy, ksleepy=ksleepy)
    return w


@pytest.mark.timeout(60)
def test_name_shows_in_the_task_failures_and_stats(w):
    t = w.submit_sub(w.h["always"], name="fetch page 7")
    assert t.name == "fetch page 7"
    f = t.exception(timeout=30).failures[0]
    assert f.name == "fetch page 7" and "fetch page 7" in str(t.exception())
    default = w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.0))
    assert default.name.endswith("sleepy")
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_retry_on_reruns_a_raising_task_within_its_retries(w):
    c = w.zeros(1, np.int64)
    t = w.submit_sub(w.h["flaky"], tf.TaskArgs().inout(c).scalar(3), retries=3, retry_on=Flaky)
    assert t.result(timeout=30) == 3 and c[0] == 3
    assert w.stats()["retried"] == 2
    c2 = w.zeros(1, np.int64)
    t2 = w.submit_sub(w.h["flaky"], tf.TaskArgs().inout(c2).scalar(10), retries=2, retry_on=(KeyError, Flaky))
    f = t2.exception(timeout=30).failures[0]
    assert f.kind == "exception" and f.attempts == 3 and "attempt 3" in f.message
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_retry_on_true_means_any_exception_and_other_exceptions_are_not_retried(w):
    c = w.zeros(1, np.int64)
    assert w.submit_sub(w.h["flaky"], tf.TaskArgs().inout(c).scalar(2), retries=1, retry_on=True).result(30) == 2
    t = w.submit_sub(w.h["always"], retries=5, retry_on=Flaky)
    assert t.exception(timeout=30).failures[0].attempts == 1, "a KeyError is not a Flaky"
    with pytest.raises(tf.TaskError):
        w.drain()


def test_retry_on_without_retries_is_refused_with_the_fix(w):
    with pytest.raises(ValueError, match="retries"):
        w.submit_sub(w.h["always"], retry_on=KeyError)
    with pytest.raises(TypeError, match="exception classes"):
        w.submit_sub(w.h["always"], retries=1, retry_on="KeyError")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["sub", "chip"])
def test_timeout_kills_and_replaces_the_worker_and_fails_the_task_as_timeout(w, where):
    before = w.pids()
    if where == "sub":
        t = w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(60.0), timeout=0.3, name="stuck")
    else:
        t = w.submit_next_level(w.h["ksleepy"], tf.TaskArgs().scalar(60.0), worker=1, timeout=0.3, name="stuck")
    f = t.exception(timeout=30).failures[0]
    assert f.kind == "timeout" and "timeout of 0.3 s" in f.message and "stuck" in f.message
    assert f.worker == ("chip 1" if where == "chip" else f.worker)
    # The pool keeps its size: the killed worker is replaced and serves.
    deadline = time.monotonic() + 20
    while w.stats()["restarts"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    after = w.pids()
    assert after.keys() == before.keys() and after[f.worker] != before[f.worker]
    ok = (w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.0), timeout=30) if where == "sub"
          else w.submit_next_level(w.h["ksleepy"], tf.TaskArgs().scalar(0.0), worker=1, timeout=30))
    ok.wait(timeout=30)
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_a_task_within_its_timeout_is_untouched(w):
    t = w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.05), timeout=30.0)
    assert t.result(timeout=30) == "woke"
    assert w.stats()["restarts"] == 0


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_timeouts_are_refused(w, bad, exc):
    with pytest.raises(exc):
        w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.0), timeout=bad)


@pytest.mark.timeout(60)
def test_huge_timeouts_mean_no_limit(w):
    t = w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.0), timeout=float("inf"))
    t.wait(timeout=1e10)
    t.wait(timeout=float("inf"))
    w.drain(timeout=1e10)
    w.drain(timeout=float("inf"))
    slow = w.submit_sub(w.h["sleepy"], tf.TaskArgs().scalar(0.3))
    t0 = time.monotonic()
    slow.wait(timeout=1e10)  # must wait, not time out at once
    assert time.monotonic() - t0 > 0.1
