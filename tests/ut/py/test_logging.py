"""The "tierflow" logger: worker deaths, replacements, retries, timeouts and
cancellations at INFO or WARNING, a Worker's lifecycle at DEBUG, and
nothing at all at INFO or above while tasks simply run."""
import logging
import os
import signal
import time

import pytest

import tierflow as tf
from conftest import wait_until


def nap(args):
    time.sleep(args.scalar(0))


def die(args):
    os.kill(os.getpid(), signal.SIGKILL)


def quick(args):
    pass


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.DEBUG, logger="tierflow")

    def find(*parts, level=None):
        return [r for r in caplog.records if r.name == "tierflow" and all(p in r.getMessage() for p in parts)
                and (level is None or r.levelno == level)]
    find.all = lambda: [r for r in caplog.records if r.name == "tierflow"]
    return find


def test_a_death_and_its_replacement_are_logged(make_worker, records):
    w = make_worker(sub_workers=1)
    h = w.register_sub(die)
    w.init()
    t = w.submit_sub(h, None, name="doomed")
    with pytest.raises(tf.TaskError):
        t.wait(30)
    assert wait_until(lambda: records("sub 0 (pid", "died: killed by signal SIGKILL", f"task {t.id} (doomed)",
                                      level=logging.WARNING), 10)
    assert wait_until(lambda: records("sub 0 is back", level=logging.INFO), 10)
    assert all(r.getMessage().startswith(f"{w.name}: ") for r in records.all())


def test_a_retry_is_logged_with_its_attempt(make_worker, records):
    w = make_worker(sub_workers=1)
    h = w.register_sub(die)
    w.init()
    t = w.submit_sub(h, None, retries=1)
    with pytest.raises(tf.TaskError):
        t.wait(30)
    assert wait_until(lambda: records(f"task {t.id} (die) failed (worker_died on sub 0) and is retried: attempt 2 of 2",
                                      level=logging.INFO), 10)


def test_a_timeout_is_a_warning(make_worker, records):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    t = w.submit_sub(h, tf.TaskArgs().scalar(30.0), timeout=0.3)
    with pytest.raises(tf.TaskError):
        t.wait(30)
    assert wait_until(lambda: records(f"task {t.id} (nap) ran longer than its timeout of 0.3 s on sub 0",
                                      level=logging.WARNING), 10)
    # The kill it caused is not reported a second time as news.
    assert not records("died", level=logging.WARNING)


def test_cancelling_a_backlog_is_one_line(make_worker, records):
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    for _ in range(50):
        w.submit_sub(h, tf.TaskArgs().scalar(0.2))
    w.close(cancel=True)
    lines = records("queued task(s) before they started", level=logging.INFO)
    assert len(lines) == 1 and "the Worker is closing" in lines[0].getMessage()


def test_the_lifecycle_is_debug_and_a_healthy_run_logs_nothing_above(make_worker, records):
    w = make_worker(sub_workers=2)
    h = w.register_sub(quick)
    w.init()
    s = w.session("etl")
    for _ in range(200):
        s.submit_sub(h, None)
    s.drain()
    s.close()
    w.close()
    assert records("started: level 3, 2 sub-worker(s)", level=logging.DEBUG)
    assert records("session 'etl' opened", level=logging.DEBUG) and records("session 'etl' closed")
    assert records("closing", level=logging.DEBUG)
    assert [r for r in records.all() if r.levelno >= logging.INFO] == []
