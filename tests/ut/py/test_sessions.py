"""Sessions (contract section 8): many clients on one Worker's pool — each
with its own queue (weighted round robin), window share, scopes, drain,
failures and cancellation; dependencies across sessions in the order
submits reach the Worker."""
import threading
import time

import numpy as np
import pytest

import tierflow as tf

from conftest import wait_until


def spin(args):
    """Busy for scalar(0) seconds; returns its start time (CLOCK_MONOTONIC is
    one clock for every process of the host)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.scalar(0):
        pass
    return t0


def fill(args):
    args.tensor(0)[...] = args.scalar(0)


def copy(args):
    args.tensor(1)[...] = args.tensor(0)


def boom(args):
    raise ValueError("boom")


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=2, window=256)
    w.h = {f.__name__: w.register_sub(f) for f in (spin, fill, copy, boom)}
    w.init()
    return w


def test_a_session_needs_a_started_worker_and_a_fresh_name(worker_factory):
    w = worker_factory(sub_workers=1)
    w.register_sub(fill)
    with pytest.raises(tf.WorkerStateError):
        w.session("early")
    w.init()
    s = w.session("a", weight=2)
    assert (s.name, s.weight) == ("a", 2) and isinstance(s, tf.Orchestrator)
    with pytest.raises(ValueError, match="already open"):
        w.session("a")
    with pytest.raises(ValueError):
        w.session("default")
    for bad, exc in [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(exc):
            w.session("b", weight=bad)
    with pytest.raises(TypeError):
        w.session("")
    assert [x.name for x in w.sessions()] == ["default", "a"]
    s.close()
    assert w.session("a").name == "a"  # the name is free again


@pytest.mark.timeout(60)
def test_drain_reports_only_the_sessions_own_failures(w):
    a, b = w.session("a"), w.session("b")
    bad = a.submit_sub(w.h["boom"])
    good = b.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.0))
    b.drain()  # b's work is fine, a's failure is not b's
    assert good.state in ("completed", "consumed") and bad.exception(timeout=30) is not None
    with pytest.raises(tf.TaskError) as e:
        a.drain()
    assert [f.task_id for f in e.value.failures] == [bad.id]
    w.drain()  # the default session saw nothing


@pytest.mark.timeout(60)
def test_dependencies_cross_sessions_in_the_order_submits_arrive(w):
    a, b = w.session("a"), w.session("b")
    x, y = w.alloc(4), w.alloc(4)
    a.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.2))
    a.submit_sub(w.h["fill"], tf.TaskArgs().output(x).scalar(5.0))
    b.submit_sub(w.h["copy"], tf.TaskArgs().input(x).output(y))  # waits for a's writer
    b.drain()
    assert np.all(y == 5.0)
    # A failure reaches a reader in another session.
    failed = a.submit_sub(w.h["boom"], tf.TaskArgs().output(x))
    reader = b.submit_sub(w.h["copy"], tf.TaskArgs().input(x).output(y))
    f = reader.exception(timeout=30).failures[0]
    assert f.kind == "dependency_failed" and f.cause_task_id == failed.id
    with pytest.raises(tf.TaskError):
        b.drain()
    with pytest.raises(tf.TaskError):
        a.drain()


@pytest.mark.timeout(60)
def test_cancelling_one_session_leaves_the_others_alone(w):
    a, b = w.session("a"), w.session("b")
    a_tasks = [a.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.05)) for _ in range(40)]
    b_tasks = [b.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.01)) for _ in range(40)]
    a.close(cancel=True)
    assert any(t.state == "cancelled" for t in a_tasks)
    b.drain()
    assert all(t.state in ("completed", "consumed") for t in b_tasks)


@pytest.mark.timeout(60)
def test_a_closed_session_refuses_everything_and_its_tasks_stay_queryable(w):
    s = w.session("gone")
    t = s.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.0))
    s.close()
    assert t.done() and t.result() is not None
    for call in (lambda: s.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.0)), s.drain, s.stats,
                 lambda: s.scope().__enter__(), lambda: s.run(lambda o, a: None)):
        with pytest.raises(tf.WorkerClosed, match="'gone'"):
            call()
    s.close()  # idempotent
    with pytest.raises(ValueError):
        w.sessions()[0].close()  # the default session closes with its Worker


@pytest.mark.timeout(60)
def test_closing_the_worker_closes_every_session(worker_factory):
    w = worker_factory(sub_workers=1)
    h = w.register_sub(spin)
    w.init()
    s = w.session("client")
    t = s.submit_sub(h, tf.TaskArgs().scalar(0.05))
    w.close()
    assert t.done()
    with pytest.raises(tf.WorkerClosed):
        s.submit_sub(h, tf.TaskArgs().scalar(0.0))


@pytest.mark.timeout(60)
def test_leaving_a_session_block_by_an_exception_cancels_its_pending_work(w):
    tasks = []
    with pytest.raises(RuntimeError):
        with w.session("job") as s:
            tasks = [s.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.05)) for _ in range(50)]
            raise RuntimeError("the client gave up")
    assert s._closed and any(t.state == "cancelled" for t in tasks)


@pytest.mark.timeout(120)
def test_a_light_session_is_served_while_a_heavy_one_has_a_deep_backlog(w):
    heavy, light = w.session("heavy"), w.session("light")
    heavy_tasks = [heavy.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.002)) for _ in range(200)]
    # The light session's task is submitted behind 200 queued heavy tasks...
    light_start = light.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.0)).result(timeout=60)
    heavy.drain()
    heavy_starts = sorted(t.result() for t in heavy_tasks)
    before = sum(1 for x in heavy_starts if x < light_start)
    # ...and starts after at most a round of the heavy session, not after all of it.
    assert before <= 10, f"{before} heavy tasks started before the light one"


@pytest.mark.timeout(120)
def test_weights_share_the_workers_under_saturation(w):
    big, small = w.session("big", weight=3), w.session("small", weight=1)
    tb = [big.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.001)) for _ in range(300)]
    ts = [small.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.001)) for _ in range(300)]
    big.drain()
    small.drain()
    starts = sorted([(t.result(), "big") for t in tb] + [(t.result(), "small") for t in ts])
    # While both are backlogged (the first 200 starts), 3 of 4 turns are big's.
    first = [who for _, who in starts[:200]]
    share = first.count("big") / len(first)
    assert 0.65 <= share <= 0.85, f"big had {share:.2f} of the turns"


@pytest.mark.timeout(60)
def test_a_backlogged_session_cannot_hold_every_slot_while_another_waits(worker_factory):
    w = worker_factory(sub_workers=1, window=16)
    h = w.register_sub(spin)
    w.init()
    heavy, light = w.session("heavy"), w.session("light")
    done = threading.Event()

    def flood():  # blocks on the window most of the time
        for _ in range(100):
            heavy.submit_sub(h, tf.TaskArgs().scalar(0.01))
        done.set()

    th = threading.Thread(target=flood)
    th.start()
    assert wait_until(lambda: heavy.stats()["outstanding"] >= 15, timeout=20)
    t0 = time.monotonic()
    light.submit_sub(h, tf.TaskArgs().scalar(0.0)).wait(timeout=30)
    waited = time.monotonic() - t0
    assert not done.is_set(), "the heavy session finished first: the test proves nothing"
    assert waited < 0.5 * 100 * 0.01, f"the light submit waited {waited:.2f} s behind the backlog"
    th.join()
    heavy.drain()


@pytest.mark.timeout(60)
def test_window_exhausted_is_judged_per_session(worker_factory):
    w = worker_factory(sub_workers=1, window=8)
    h = w.register_sub(spin)
    w.init()
    a, b = w.session("a"), w.session("b")
    with b.scope():
        for _ in range(3):
            b.submit_sub(h, tf.TaskArgs().scalar(0.0))
        with a.scope():
            with pytest.raises(tf.WindowExhausted, match="share"):
                for _ in range(8):  # more than a's share beside b
                    a.submit_sub(h, tf.TaskArgs().scalar(0.0))
    a.drain()
    b.drain()


@pytest.mark.timeout(120)
def test_a_session_with_100k_queued_tasks_does_not_delay_two_tasks_of_another(worker_factory):
    w = worker_factory(sub_workers=2, window=1 << 17)
    noop = w.register_sub(lambda args: None)
    work = w.register_sub(spin)
    w.init()
    big, small = w.session("big"), w.session("small")
    # 20 us each: a backlog of about a second on 2 workers, however fast
    # the submits are, so it is still there when the small session submits.
    busy = tf.TaskArgs().scalar(20e-6)
    for _ in range(100_000):
        big.submit_sub(work, busy)
    t0 = time.monotonic()
    two = [small.submit_sub(noop) for _ in range(2)]
    for t in two:
        t.wait(timeout=60)
    assert big.stats()["outstanding"] > 0, "the backlog drained first: the test proves nothing"
    small.drain()
    big.drain()
    assert time.monotonic() - t0 < 60


@pytest.mark.timeout(60)
def test_sessions_can_be_opened_and_driven_from_many_threads_at_once(w):
    errors = []
    x = w.zeros(8, np.float64)

    def client(i):
        try:
            with w.session(f"client {i}") as s:
                y = w.zeros(16, np.float64)
                for k in range(50):
                    s.submit_sub(w.h["fill"], tf.TaskArgs().output(y[k % 16:k % 16 + 1]).scalar(float(i)))
                s.submit_sub(w.h["copy"], tf.TaskArgs().input(y[:8]).output(x) if i == 0 else tf.TaskArgs()
                             .input(y[:1]).output(w.alloc(1, np.float64)))
                s.drain()
                assert np.all(y == i)
        except BaseException as e:  # reported below
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert np.all(x == 0)


@pytest.mark.timeout(120)
def test_concurrent_first_inits_initialise_once_and_share_the_result(worker_factory):
    w = worker_factory(sub_workers=2)
    w.register_sub(fill)
    results = []
    go = threading.Barrier(6)

    def call():
        go.wait()
        try:
            results.append(w.init())
        except BaseException as e:
            results.append(e)

    ts = [threading.Thread(target=call) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(r is w for r in results), results
    assert len(w.pids()) == 2
    from conftest import children_of
    import os
    servers = [p for p in children_of(os.getpid()) if p == w._server_pid]
    assert len(servers) == 1


@pytest.mark.timeout(60)
def test_concurrent_inits_all_see_the_same_error(worker_factory, monkeypatch):
    from tierflow import _core
    w = worker_factory(sub_workers=1)
    w.register_sub(fill)

    def slow_failure(*args, **kwargs):
        time.sleep(0.2)
        raise RuntimeError("engine refused (injected)")

    monkeypatch.setattr(_core, "Engine", slow_failure)
    errors = []
    go = threading.Barrier(4)

    def call():
        go.wait()
        try:
            w.init()
        except BaseException as e:
            errors.append(e)

    ts = [threading.Thread(target=call) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(errors) == 4 and len({id(e) for e in errors}) == 1, errors


def test_stats_per_session(w):
    s = w.session("counted", weight=2)
    s.submit_sub(w.h["spin"], tf.TaskArgs().scalar(0.01))
    s.submit_sub(w.h["boom"])
    with pytest.raises(tf.TaskError):
        s.drain()
    st = s.stats()
    assert (st["submitted"], st["completed"], st["failed"], st["queue_depth"], st["running"], st["weight"]) == \
        (2, 1, 1, 0, 0, 2)
    # Busy time per worker, like the Worker's own: the same workers, only
    # this session's time (the 10 ms spin on a sub-worker), and its sum.
    top = w.stats()
    assert set(st["busy_seconds"]) == set(top["busy_seconds"])
    assert sum(v for k, v in st["busy_seconds"].items() if k.startswith("sub")) >= 0.01
    assert all(v == 0 for k, v in st["busy_seconds"].items() if k.startswith("chip"))
    assert st["busy_total"] == pytest.approx(sum(st["busy_seconds"].values()))
    assert top["sessions"]["counted"] == st
    assert top["sessions"]["default"]["busy_total"] == 0
