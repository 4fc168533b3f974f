"""Worker lifecycle (contract section 1): construction, init() forks the
children, close() stops them, the context manager does both."""
import os
import threading
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import children_of, process_running, wait_until
import subprocess
import sys
import textwrap


def whoami(args):
    out = args.tensor(0)
    out[0] = os.getpid()
    out[1] = os.getppid()


def chip_whoami(args, chip):
    out = args.tensor(0)
    out[0] = os.getpid()
    out[1] = chip.chip_id


def slow_fill(args):
    time.sleep(0.3)
    args.tensor(0)[...] = args.scalar(0)


@pytest.mark.timeout(60)
def test_init_forks_one_process_per_chip_and_sub_worker(worker_factory):
    w = worker_factory(chips=3, sub_workers=2)
    w.register_sub(whoami)
    w.init()
    pids = w.pids()
    assert sorted(pids) == ["chip 0", "chip 1", "chip 2", "sub 0", "sub 1"]
    assert len(set(pids.values())) == 5 and os.getpid() not in pids.values()
    assert all(process_running(p) for p in pids.values())


@pytest.mark.timeout(60)
def test_no_child_exists_before_init(worker_factory):
    before = children_of(os.getpid())
    w = worker_factory(chips=2, sub_workers=2)
    w.register_sub(whoami)
    w.alloc(16)  # touching the arena forks nothing
    assert children_of(os.getpid()) == before
    w.init()
    assert len(children_of(os.getpid()) - before) >= 1


@pytest.mark.timeout(60)
def test_tasks_run_in_the_child_processes(worker_factory):
    w = worker_factory(chips=2, sub_workers=1)
    s = w.register_sub(whoami)
    k = w.register_kernel(chip_whoami)
    w.init()
    a, b = w.alloc(2, np.int64), w.alloc(2, np.int64)
    w.submit_sub(s, tf.TaskArgs().output(a))
    w.submit_next_level(k, tf.TaskArgs().output(b), worker=1)
    w.drain()
    pids = w.pids()
    assert a[0] == pids["sub 0"] and a[0] != os.getpid()
    assert b[0] == pids["chip 1"] and b[1] == 1


@pytest.mark.timeout(60)
def test_context_manager_inits_and_closes():
    w = tf.Worker(level=3, chips=1, sub_workers=1)
    s = w.register_sub(whoami)
    with w as entered:
        assert entered is w
        pids = list(w.pids().values())
        out = w.alloc(2, np.int64)
        w.submit_sub(s, tf.TaskArgs().output(out))
        w.drain()
    assert out[0] in pids
    assert wait_until(lambda: not any(process_running(p) for p in pids), timeout=5)
    with pytest.raises(tf.WorkerClosed):
        w.submit_sub(s, tf.TaskArgs())


@pytest.mark.timeout(60)
def test_context_manager_on_an_initialised_worker(worker_factory):
    w = worker_factory(sub_workers=1)
    w.register_sub(whoami)
    w.init()
    pids = list(w.pids().values())
    with w:
        assert w.pids() and list(w.pids().values()) == pids
    assert not any(process_running(p) for p in pids)


@pytest.mark.timeout(60)
def test_close_waits_for_submitted_work(worker_factory):
    w = worker_factory(sub_workers=2)
    s = w.register_sub(slow_fill)
    w.init()
    outs = [w.alloc(8, np.float64) for _ in range(4)]
    for i, o in enumerate(outs):
        o[:] = -1
        w.submit_sub(s, tf.TaskArgs().output(o).scalar(float(i)))
    w.close()
    for i, o in enumerate(outs):
        assert np.all(o == i)


@pytest.mark.timeout(60)
def test_close_is_idempotent(worker_factory):
    w = worker_factory(chips=1)
    w.init()
    w.close()
    w.close()
    with pytest.raises(tf.WorkerClosed):
        w.pids()


@pytest.mark.timeout(60)
def test_close_without_init_is_allowed_and_final(worker_factory):
    w = worker_factory(sub_workers=1)
    h = w.register_sub(whoami)
    w.close()
    with pytest.raises(tf.WorkerClosed):
        w.init()
    with pytest.raises(tf.WorkerClosed):
        w.submit_sub(h)


@pytest.mark.timeout(60)
def test_init_initialises_once_and_later_calls_return_the_worker(worker_factory):
    w = worker_factory(sub_workers=1)
    assert w.init() is w
    pids = w.pids()
    assert w.init() is w
    assert w.pids() == pids, "a second init() must not fork again"


def test_levels_beyond_the_arena_spaces_are_refused():
    with pytest.raises(ValueError, match="level"):
        tf.Worker(level=10)
    assert tf.Worker(level=9).level == 9


def test_pids_before_init_is_a_state_error():
    w = tf.Worker(level=3)
    try:
        with pytest.raises(tf.WorkerStateError):
            w.pids()  # not started yet
    finally:
        w.close()


@pytest.mark.timeout(60)
def test_stats_count_submitted_completed_and_failed(worker_factory):
    w = worker_factory(sub_workers=2)
    ok = w.register_sub(lambda a: None)

    @w.sub
    def bad(args):
        raise RuntimeError("no")

    w.init()
    assert {"submitted", "completed", "failed"} <= set(w.stats())
    for _ in range(5):
        w.submit_sub(ok)
    w.submit_sub(bad)
    with pytest.raises(tf.TaskError):
        w.drain()
    st = w.stats()
    assert st["submitted"] == 6 and st["completed"] == 5 and st["failed"] == 1


@pytest.mark.timeout(60)
def test_worker_is_usable_from_another_thread(worker_factory):
    w = worker_factory(sub_workers=1)
    s = w.register_sub(slow_fill)
    w.init()
    out = w.alloc(4, np.float64)
    errors = []

    def body():
        try:
            w.submit_sub(s, tf.TaskArgs().output(out).scalar(7.0))
            w.drain()
        except BaseException as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=body)
    t.start()
    t.join(30)
    assert not t.is_alive() and errors == []
    assert np.all(out == 7)


@pytest.mark.timeout(60)
def test_task_ids_are_unique(worker_factory):
    w = worker_factory(sub_workers=2, chips=1, window=8)
    s = w.register_sub(lambda a: None)
    k = w.register_kernel(lambda a, c: None)
    w.init()
    ts = [w.submit_sub(s) if i % 2 else w.submit_next_level(k) for i in range(50)]
    w.drain()
    assert len({t.id for t in ts}) == 50
    assert all(t.done() for t in ts)


@pytest.mark.timeout(60)
def test_run_calls_the_orch_function_then_drains(worker_factory):
    w = worker_factory(sub_workers=1, chips=2)
    s = w.register_sub(slow_fill)

    @w.kernel
    def double(args, chip):
        args.tensor(0)[...] *= 2

    w.init()
    x = w.alloc(4, np.float64)
    calls = []

    def orch(o, arg):
        calls.append((isinstance(o, tf.Orchestrator), arg))
        o.submit_sub(s, tf.TaskArgs().output(x).scalar(3.0))  # slow: run() must wait for it
        with o.scope():
            o.submit_next_level(double, tf.TaskArgs().inout(x[:2]), worker=1)
        o.submit_group(double, [tf.TaskArgs().inout(x[2:3]), tf.TaskArgs().inout(x[3:4])])

    w.run(orch, "arg")
    assert calls == [(True, "arg")]
    assert list(x) == [6.0, 6.0, 6.0, 6.0]


# --- further cases -------------------------------------------------------

def noop(args):
    pass


def test_with_block_inits_and_closes_leaving_no_child():
    wk = tf.Worker(level=3, chips=2, sub_workers=2)
    h = wk.register_sub(noop)
    with wk:
        pids = list(wk.pids().values())
        assert len(pids) == 4 and all(process_running(p) for p in pids)
        wk.submit_sub(h).wait(timeout=10)
    assert not any(process_running(p) for p in pids)


def test_exception_inside_with_cleans_up_and_propagates():
    wk = tf.Worker(level=3, sub_workers=1)
    wk.register_sub(noop)
    with pytest.raises(KeyError):
        with wk:
            pids = list(wk.pids().values())
            raise KeyError("boom")
    assert not any(process_running(p) for p in pids)
    with pytest.raises(tf.WorkerClosed):
        wk.pids()


def test_every_call_after_close_raises_worker_closed():
    wk = tf.Worker(level=3, chips=1, sub_workers=1)
    h = wk.register_sub(noop)
    k = wk.register_kernel(lambda a, c: None)
    wk.init()
    t = wk.submit_sub(h)
    wk.close()
    wk.close()  # idempotent
    for call in (lambda: wk.submit_sub(h), lambda: wk.submit_next_level(k), lambda: wk.submit_group(k, [tf.TaskArgs()]),
                 lambda: wk.drain(), lambda: wk.run(lambda o, a: None), lambda: wk.alloc(4), lambda: wk.share([1]),
                 lambda: wk.register_sub(noop), lambda: wk.init(), lambda: wk.stats(),
                 lambda: wk.scope().__enter__()):
        with pytest.raises(tf.WorkerClosed):
            call()
    # A Task stays queryable after its Worker closed.
    assert t.state == "consumed" and t.done() and t.result() is None
    t.wait()


def test_registering_after_init_raises_worker_state_error(make_worker):
    wk = make_worker(sub_workers=1, chips=1)
    wk.init()
    for reg in (wk.register_sub, wk.register_kernel, wk.register_orch, wk.sub, wk.kernel):
        with pytest.raises(tf.WorkerStateError, match="before init"):
            reg(noop)
    assert wk.init() is wk  # initialised once: later calls are harmless


def test_submit_before_init_raises_worker_state_error(make_worker):
    wk = make_worker(sub_workers=1)
    h = wk.register_sub(noop)
    with pytest.raises(tf.WorkerStateError, match="init"):
        wk.submit_sub(h)
    with pytest.raises(tf.WorkerStateError):
        wk.drain()


def test_decorators_return_typed_handles(make_worker):
    wk = make_worker(sub_workers=1, chips=1)

    @wk.sub
    def s(args):
        pass

    @wk.kernel
    def k(args, chip):
        pass

    @wk.orch
    def o(orch, args):
        pass

    assert isinstance(s, tf.SubHandle) and isinstance(k, tf.KernelHandle) and isinstance(o, tf.OrchHandle)


@pytest.mark.parametrize("kw, exc", [({"chips": -1}, ValueError), ({"window": 0}, ValueError),
                                     ({"sub_workers": 1.5}, TypeError), ({"level": 2}, ValueError)])
def test_bad_constructor_arguments(kw, exc):
    with pytest.raises(exc):
        tf.Worker(**{"level": 3, **kw})


def test_interpreter_exit_without_close_leaves_no_child():
    script = textwrap.dedent("""
        import tierflow as tf
        wk = tf.Worker(level=3, chips=2, sub_workers=1)
        wk.init()
        print(" ".join(str(p) for p in wk.pids().values()), flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pids = [int(x) for x in p.stdout.split()]
    assert len(pids) == 3 and not any(process_running(x) for x in pids)


def test_arrays_stay_readable_after_close():
    wk = tf.Worker(level=3, sub_workers=1)

    @wk.sub
    def fill(args):
        args.tensor(0)[...] = 3

    with wk:
        a = wk.alloc(16, np.int32)
        wk.submit_sub(fill, tf.TaskArgs().output(a))
        wk.drain()
    assert np.all(a == 3)


def test_run_calls_orch_fn_with_an_orchestrator_then_drains(make_worker):
    wk = make_worker(sub_workers=2)

    @wk.sub
    def inc(args):
        args.tensor(0)[...] += 1

    wk.init()
    x = wk.alloc(4, np.int64)
    x[:] = 0
    seen = []

    def orch(o, args):
        seen.append((isinstance(o, tf.Orchestrator), args))
        with o.scope():
            for _ in range(10):
                o.submit_sub(inc, tf.TaskArgs().inout(x))

    wk.run(orch, "payload")
    assert seen == [(True, "payload")]
    assert np.all(x == 10)
