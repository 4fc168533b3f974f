"""w.explain() says, for a stuck run, where each unfinished task runs and
for how long, what a queued one waits behind, and which producers a pending
one waits on; drain(timeout=) puts the head of that report in its
TimeoutError."""
import os
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import wait_until


def nap(args):
    time.sleep(args.scalar(0))


def test_explain_names_running_queued_and_waiting_tasks(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    x = w.zeros(4)
    slow = w.submit_sub(h, tf.TaskArgs().inout(x).scalar(30.0), name="slow")
    after = w.submit_sub(h, tf.TaskArgs().inout(x).scalar(0.0), name="after")  # reads what slow writes
    other = w.submit_sub(h, tf.TaskArgs().scalar(0.0), name="other")           # independent, but no free sub
    assert wait_until(slow.running, 10)
    report = w.explain()
    assert f"{w.name}: 3 unfinished task(s)" in report
    assert f"task {slow.id} (slow) on sub 0 for" in report
    assert f"task {other.id} (other): 0 task(s) of its session queued before it" in report
    assert f"task {after.id} (after) waits on task {slow.id} (slow, running)" in report
    assert report.index("running (1)") < report.index("ready, waiting for a worker (1)") < \
        report.index("pending, waiting for producers (1)")
    w.close(cancel=True)


def test_a_drain_timeout_carries_the_head_of_the_report(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    x = w.zeros(4)
    slow = w.submit_sub(h, tf.TaskArgs().inout(x).scalar(30.0), name="slow")
    w.submit_sub(h, tf.TaskArgs().inout(x).scalar(0.0), name="after")
    with pytest.raises(TimeoutError) as e:
        w.drain(timeout=0.5)
    text = str(e.value)
    assert "drain() timed out after 0.5 s" in text and f"waits on task {slow.id} (slow, running)" in text
    w.close(cancel=True)


def test_a_sessions_timeout_reports_only_its_own_tasks(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    w.submit_sub(h, tf.TaskArgs().scalar(30.0), name="default-one")
    with w.session("etl") as s:
        mine = s.submit_sub(h, tf.TaskArgs().scalar(0.0), name="mine")
        with pytest.raises(TimeoutError) as e:
            s.drain(timeout=0.3)
        text = str(e.value)
        assert "of session 'etl'" in text and f"task {mine.id} (mine) [session etl]" in text
        assert "default-one" not in text
        w.close(cancel=True)


def test_nothing_unfinished_says_so_and_many_are_summarised(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    assert w.explain() == f"{w.name}: no unfinished task"
    first = w.submit_sub(h, tf.TaskArgs().scalar(30.0))
    for _ in range(40):
        w.submit_sub(h, tf.TaskArgs().scalar(0.0))
    assert wait_until(first.running, 10)
    report = w.explain()
    assert "ready, waiting for a worker (40)" in report and "... and 20 more" in report
    w.close(cancel=True)


def test_explain_before_init_is_a_state_error(make_worker):
    w = make_worker(sub_workers=1)
    with pytest.raises(tf.WorkerStateError):
        w.explain()


ENTERED = None  # set before init(): the forked subs inherit it


def stuck_here(args):
    open(ENTERED, "w").close()  # the test dumps only once the child is inside
    time.sleep(30)


def stuck_worker(make_worker, tmp_path, subs):
    """A Worker one of whose sub-workers is inside stuck_here() (it said so)."""
    global ENTERED
    ENTERED = str(tmp_path / "entered")
    w = make_worker(sub_workers=subs)
    h = w.register_sub(stuck_here)
    w.init()
    w.submit_sub(h, None)
    assert wait_until(lambda: os.path.exists(ENTERED), 10)
    return w


def read_err_until(capfd, *needles, timeout=10.0, settle=0.3):
    """stderr, read until every needle has shown up and then `settle` more
    seconds (the rest of a dump): the output pump delivers a dump a moment
    after the signal, later on a loaded machine."""
    err, deadline = "", time.monotonic() + timeout
    while not all(n in err for n in needles) and time.monotonic() < deadline:
        time.sleep(0.05)
        err += capfd.readouterr().err
    time.sleep(settle)
    return err + capfd.readouterr().err


def test_dump_stacks_prints_each_childs_stack_one_at_a_time(make_worker, capfd, tmp_path):
    w = stuck_worker(make_worker, tmp_path, subs=2)
    asked = w.dump_stacks(pause=0.3)
    assert asked == ["sub 0", "sub 1"]
    err = read_err_until(capfd, "stuck_here", "[sub 0]", "[sub 1]")
    lines = [l for l in err.splitlines() if l.startswith("[sub ")]
    assert any("stuck_here" in l for l in lines), err[-2000:]
    # One child's dump ends before the next one's begins.
    first_of = {p: i for i, l in reversed(list(enumerate(lines))) for p in ("[sub 0]", "[sub 1]") if l.startswith(p)}
    last_of = {p: i for i, l in enumerate(lines) for p in ("[sub 0]", "[sub 1]") if l.startswith(p)}
    a, b = sorted(first_of, key=first_of.get)
    assert last_of[a] < first_of[b]
    w.close(cancel=True)


def test_a_drain_timeout_can_dump_the_stacks_first(make_worker, capfd, tmp_path):
    w = stuck_worker(make_worker, tmp_path, subs=1)
    with pytest.raises(TimeoutError):
        w.drain(timeout=0.5, dump_stacks=True)
    assert "stuck_here" in read_err_until(capfd, "stuck_here")
    w.close(cancel=True)
