"""Worker lifecycle: init forks, close cleans up, misuse raises clearly."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tierflow as tf
from conftest import process_running


def noop(args):
    pass


def test_with_block_inits_and_closes_leaving_no_child():
    w = tf.Worker(level=3, chips=2, sub_workers=2)
    h = w.register_sub(noop)
    with w:
        pids = list(w.pids().values())
        assert len(pids) == 4 and all(process_running(p) for p in pids)
        w.submit_sub(h).wait(timeout=10)
    assert not any(process_running(p) for p in pids)


def test_exception_inside_with_cleans_up_and_propagates():
    w = tf.Worker(level=3, sub_workers=1)
    w.register_sub(noop)
    with pytest.raises(KeyError):
        with w:
            pids = list(w.pids().values())
            raise KeyError("boom")
    assert not any(process_running(p) for p in pids)
    with pytest.raises(tf.WorkerClosed):
        w.pids()


def test_every_call_after_close_raises_worker_closed():
    w = tf.Worker(level=3, chips=1, sub_workers=1)
    h = w.register_sub(noop)
    k = w.register_kernel(lambda a, c: None)
    w.init()
    t = w.submit_sub(h)
    w.close()
    w.close()  # idempotent
    for call in (lambda: w.submit_sub(h), lambda: w.submit_next_level(k), lambda: w.submit_group(k, [tf.TaskArgs()]),
                 lambda: w.drain(), lambda: w.run(lambda o, a: None), lambda: w.alloc(4), lambda: w.share([1]),
                 lambda: w.register_sub(noop), lambda: w.init(), lambda: w.stats(), lambda: t.state,
                 lambda: t.wait(), lambda: w.scope().__enter__()):
        with pytest.raises(tf.WorkerClosed):
            call()


def test_registering_after_init_raises_worker_state_error(make_worker):
    w = make_worker(sub_workers=1, chips=1)
    w.init()
    for reg in (w.register_sub, w.register_kernel, w.register_orch, w.sub, w.kernel):
        with pytest.raises(tf.WorkerStateError, match="before init"):
            reg(noop)
    with pytest.raises(tf.WorkerStateError):
        w.init()


def test_submit_before_init_raises_worker_state_error(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(noop)
    with pytest.raises(tf.WorkerStateError, match="init"):
        w.submit_sub(h)
    with pytest.raises(tf.WorkerStateError):
        w.drain()


def test_decorators_return_typed_handles(make_worker):
    w = make_worker(sub_workers=1, chips=1)

    @w.sub
    def s(args):
        pass

    @w.kernel
    def k(args, chip):
        pass

    @w.orch
    def o(orch, args):
        pass

    assert isinstance(s, tf.SubHandle) and isinstance(k, tf.KernelHandle) and isinstance(o, tf.OrchHandle)


def test_level_4_is_not_available_yet():
    with pytest.raises(NotImplementedError, match="level"):
        tf.Worker(level=4, sub_workers=1)


@pytest.mark.parametrize("kw, exc", [({"chips": -1}, ValueError), ({"window": 0}, ValueError),
                                     ({"sub_workers": 1.5}, TypeError), ({"level": 2}, ValueError)])
def test_bad_constructor_arguments(kw, exc):
    with pytest.raises(exc):
        tf.Worker(**{"level": 3, **kw})


def test_interpreter_exit_without_close_leaves_no_child():
    script = textwrap.dedent("""
        import tierflow as tf
        w = tf.Worker(level=3, chips=2, sub_workers=1)
        w.init()
        print(" ".join(str(p) for p in w.pids().values()), flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    pids = [int(x) for x in p.stdout.split()]
    assert len(pids) == 3 and not any(process_running(x) for x in pids)


def test_arrays_stay_readable_after_close():
    w = tf.Worker(level=3, sub_workers=1)

    @w.sub
    def fill(args):
        args.tensor(0)[...] = 3

    with w:
        a = w.alloc(16, np.int32)
        w.submit_sub(fill, tf.TaskArgs().output(a))
        w.drain()
    assert np.all(a == 3)


def test_run_calls_orch_fn_with_an_orchestrator_then_drains(make_worker):
    w = make_worker(sub_workers=2)

    @w.sub
    def inc(args):
        args.tensor(0)[...] += 1

    w.init()
    x = w.alloc(4, np.int64)
    x[:] = 0
    seen = []

    def orch(o, args):
        seen.append((type(o), args))
        with o.scope():
            for _ in range(10):
                o.submit_sub(inc, tf.TaskArgs().inout(x))

    w.run(orch, "payload")
    assert seen == [(tf.Orchestrator, "payload")]
    assert np.all(x == 10)
