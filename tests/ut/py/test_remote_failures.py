"""Failures across the network: an inner failure keeps its path and
traceback; a daemon that dies or stops answering fails its in-flight task
as worker_died naming its address within the heartbeat bound (drain never
hangs) and serves new work once it is back; a client that goes away has its
session's work cancelled; SIGTERM lets running tasks finish."""
import os
import signal
import sys
import time

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from conftest import process_running, wait_until
from remote_rig import Daemon, probe

cloudpickle.register_pickle_by_value(sys.modules[__name__])

H = {}


def fail_on_chip(args, chip):
    if chip.chip_id == 1:
        raise ValueError(f"boom on chip {chip.chip_id}")


def nap(args, chip):
    time.sleep(args.scalar(0))
    args.tensor(0)[...] += 1


def orch_fail(o, args):
    o.submit_next_level(H["fail"], tf.TaskArgs(), worker=1)


def orch_nap(o, args):
    for _ in range(args.scalar(1)):
        o.submit_next_level(H["nap"], tf.TaskArgs().inout(args.tensor(0)).scalar(args.scalar(0)))


def level4(daemon, heartbeat=3.0):
    l3 = tf.Worker(level=3, chips=2)
    H["fail"] = l3.register_kernel(fail_on_chip)
    H["nap"] = l3.register_kernel(nap)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token, heartbeat_timeout=heartbeat)
    return w4, w4.register_orch(orch_fail), w4.register_orch(orch_nap)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path, chips=2, sub_workers=0)
    yield d
    d.stop()
    d.assert_clean()


def test_an_inner_failure_names_its_path_and_keeps_its_traceback(daemon):
    w4, fail, _ = level4(daemon)
    with w4:
        t = w4.submit_next_level(fail, None)
        with pytest.raises(tf.TaskError) as e:
            t.wait(60)
    f = e.value.failures[0]
    assert f.kind == "exception" and f.worker == "l3 0"
    assert f.message.startswith("l3 0 › chip 1: ValueError: boom on chip 1")
    assert "fail_on_chip" in f.traceback and "raise ValueError" in f.traceback
    assert isinstance(e.value.__cause__, ValueError)


def _running_remotely(daemon) -> bool:
    r = probe("ready", daemon.address, daemon.token)
    return r["ok"] and r["ready"]["live_slots"] >= 1


def test_a_killed_daemon_fails_its_task_as_worker_died_and_serves_again_once_back(daemon):
    w4, _, nap_o = level4(daemon, heartbeat=3.0)
    with w4:
        x = w4.zeros(2, np.int64)
        t = w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(30.0).scalar(1))
        assert wait_until(lambda: _running_remotely(daemon), 30)
        kids = daemon.descendants()
        assert kids
        t0 = time.monotonic()
        daemon.kill(signal.SIGKILL)
        with pytest.raises(tf.TaskError) as e:
            w4.drain(timeout=30)
        elapsed = time.monotonic() - t0
        f = e.value.failures[0]
        assert f.kind == "worker_died" and f.worker == "l3 0"
        assert daemon.address in f.message
        assert elapsed < 3.0 + 5.0, f"the failure took {elapsed:.1f} s"
        assert t.state == "failed"
        # The daemon's whole tree went with it.
        assert wait_until(lambda: not any(process_running(p) for p in kids), 10)
        daemon.assert_clean()
        # Its supervisor starts it again: the same Worker uses it for new work.
        daemon.proc.wait(10)
        daemon.restart()
        assert (x == 0).all()  # the killed attempt never wrote back
        y = w4.zeros(2, np.int64)  # (x is poisoned: its last writer failed)
        w4.submit_next_level(nap_o, tf.TaskArgs().inout(y).scalar(0.0).scalar(1)).wait(60)
        assert (y == 1).all()


def test_a_daemon_killed_while_a_large_tensor_streams(daemon):
    w4, _, nap_o = level4(daemon, heartbeat=3.0)
    with w4:
        big = w4.zeros(48 << 20, np.uint8)
        t = w4.submit_next_level(nap_o, tf.TaskArgs().inout(big).scalar(0.0).scalar(1))
        assert wait_until(t.running, 30)
        daemon.kill(signal.SIGKILL)
        with pytest.raises(tf.TaskError) as e:
            w4.drain(timeout=30)
        assert e.value.failures[0].kind == "worker_died"


def test_local_workers_keep_serving_while_a_remote_is_down(daemon):
    l3_remote, l3_local = tf.Worker(level=3, chips=2), tf.Worker(level=3, chips=2)
    for l3 in (l3_remote, l3_local):
        H["fail"] = l3.register_kernel(fail_on_chip)
        H["nap"] = l3.register_kernel(nap)
    w4 = tf.Worker(level=4)
    rid = w4.add_remote(daemon.address, l3_remote, token=daemon.token, heartbeat_timeout=2.0)
    lid = w4.add_worker(l3_local)
    nap_o = w4.register_orch(orch_nap)
    with w4:
        xs = [w4.zeros(2, np.int64) for _ in range(3)]
        w4.submit_next_level(nap_o, tf.TaskArgs().inout(xs[0]).scalar(0.0).scalar(1), worker=rid).wait(60)
        daemon.kill(signal.SIGKILL)
        lost = w4.submit_next_level(nap_o, tf.TaskArgs().inout(xs[1]).scalar(0.0).scalar(1), worker=rid)
        for _ in range(5):
            w4.submit_next_level(nap_o, tf.TaskArgs().inout(xs[2]).scalar(0.0).scalar(1), worker=lid)
        with pytest.raises(tf.TaskError) as e:
            w4.drain(timeout=60)
        assert [f.task_id for f in e.value.failures] == [lost.id]
        assert e.value.failures[0].kind == "worker_died"
        assert (xs[2] == 5).all() and (xs[0] == 1).all()
        assert w4.stats()["l3 0"]["connected"] is False


def test_retries_cover_a_lost_daemon(daemon):
    w4, _, nap_o = level4(daemon, heartbeat=3.0)
    with w4:
        x = w4.zeros(2, np.int64)
        daemon.stop()
        t = w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(0.0).scalar(1), retries=2)
        with pytest.raises(tf.TaskError) as e:
            t.wait(60)
        f = e.value.failures[0]
        assert f.kind == "worker_died" and f.attempts == 3 and "unreachable" in f.message


def test_a_daemon_that_stops_answering_fails_its_task_within_the_heartbeat_bound(daemon):
    w4, _, nap_o = level4(daemon, heartbeat=2.0)
    with w4:
        x = w4.zeros(2, np.int64)
        w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(30.0).scalar(1))
        assert wait_until(lambda: _running_remotely(daemon), 30)
        t0 = time.monotonic()
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            with pytest.raises(tf.TaskError) as e:
                w4.drain(timeout=30)
            elapsed = time.monotonic() - t0
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        f = e.value.failures[0]
        assert f.kind == "worker_died" and daemon.address in f.message
        assert elapsed < 2.0 + 4.0, f"the failure took {elapsed:.1f} s"


def test_a_client_that_goes_away_has_its_sessions_work_cancelled(daemon):
    w4, _, nap_o = level4(daemon)
    w4.init()
    x = w4.zeros(2, np.int64)
    w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(20.0).scalar(40))  # one runs, 39 queue
    assert wait_until(lambda: _running_remotely(daemon), 30)
    w4.close(cancel=True)  # its client process is gone: so is the connection

    def cleared():
        r = probe("ready", daemon.address, daemon.token)["ready"]
        return r["sessions"] == 0 and r["live_slots"] == 0

    assert wait_until(cleared, 20)
    assert "closed: its client went away" in daemon.log()
    w4b, _, nap_b = level4(daemon)  # and it serves the next client
    with w4b:
        y = w4b.zeros(2, np.int64)
        w4b.submit_next_level(nap_b, tf.TaskArgs().inout(y).scalar(0.0).scalar(3)).wait(60)
        assert (y == 3).all()


def test_sigterm_lets_the_running_task_finish(daemon):
    w4, _, nap_o = level4(daemon)
    with w4:
        x = w4.zeros(2, np.int64)
        t = w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(1.0).scalar(1))
        assert wait_until(lambda: _running_remotely(daemon), 30)
        daemon.proc.send_signal(signal.SIGTERM)
        t.wait(30)
        assert (x == 1).all()
        assert daemon.proc.wait(30) == 0
    assert not os.path.exists(daemon.ready_file)  # a stopped daemon withdraws its ready file


def test_a_timeout_replaces_the_client_and_the_next_task_reconnects(daemon):
    w4, _, nap_o = level4(daemon)
    with w4:
        x, y = w4.zeros(2, np.int64), w4.zeros(2, np.int64)
        t = w4.submit_next_level(nap_o, tf.TaskArgs().inout(x).scalar(30.0).scalar(1), timeout=1.0)
        with pytest.raises(tf.TaskError) as e:
            t.wait(30)
        assert e.value.failures[0].kind == "timeout"
        # The old client's session is cancelled on the daemon; a new client serves on.
        w4.submit_next_level(nap_o, tf.TaskArgs().inout(y).scalar(0.0).scalar(2)).wait(60)
        assert (y == 2).all()
        assert wait_until(lambda: probe("ready", daemon.address, daemon.token)["ready"]["sessions"] == 1, 20)
