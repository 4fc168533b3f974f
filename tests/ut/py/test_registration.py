"""Registering callables (contract section 2): typed handles, decorators,
registration only before init()."""
import os

import numpy as np
import pytest

import tierflow as tf


def plain_sub(args):
    args.tensor(0)[...] = 1


@pytest.mark.timeout(60)
def test_register_returns_typed_handles(worker_factory):
    w = worker_factory(chips=1, sub_workers=1)
    s = w.register_sub(plain_sub)
    k = w.register_kernel(lambda args, chip: None)
    o = w.register_orch(lambda orch, args: None)
    assert type(s) is tf.SubHandle and type(k) is tf.KernelHandle and type(o) is tf.OrchHandle


@pytest.mark.timeout(60)
def test_decorators_register_and_return_handles(worker_factory):
    w = worker_factory(chips=1, sub_workers=1)

    @w.sub
    def s(args):
        args.tensor(0)[0] = 11

    @w.kernel
    def k(args, chip):
        args.tensor(0)[0] = 22

    @w.orch
    def o(orch, args):
        pass

    assert isinstance(s, tf.SubHandle) and isinstance(k, tf.KernelHandle) and isinstance(o, tf.OrchHandle)
    w.init()
    a, b = w.alloc(1, np.int32), w.alloc(1, np.int32)
    w.submit_sub(s, tf.TaskArgs().output(a))
    w.submit_next_level(k, tf.TaskArgs().output(b))
    w.drain()
    assert a[0] == 11 and b[0] == 22


@pytest.mark.timeout(60)
def test_each_handle_runs_its_own_function(worker_factory):
    w = worker_factory(sub_workers=2, chips=2)
    subs = [w.register_sub(lambda args, i=i: args.tensor(0).fill(i)) for i in range(5)]
    kernels = [w.register_kernel(lambda args, chip, i=i: args.tensor(0).fill(100 + i)) for i in range(5)]
    w.init()
    outs = [w.alloc(3, np.int64) for _ in range(10)]
    for i, h in enumerate(subs):
        w.submit_sub(h, tf.TaskArgs().output(outs[i]))
    for i, h in enumerate(kernels):
        w.submit_next_level(h, tf.TaskArgs().output(outs[5 + i]))
    w.drain()
    assert [int(o[0]) for o in outs] == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]


@pytest.mark.timeout(60)
def test_closures_see_state_captured_before_init(worker_factory):
    w = worker_factory(sub_workers=1)
    table = {"factor": 3}

    @w.sub
    def scaled(args):
        args.tensor(0)[...] *= table["factor"]

    w.init()
    x = w.share(np.arange(4, dtype=np.int64))
    w.submit_sub(scaled, tf.TaskArgs().inout(x))
    w.drain()
    assert list(x) == [0, 3, 6, 9]


@pytest.mark.timeout(60)
def test_sub_and_kernel_run_in_different_processes(worker_factory):
    w = worker_factory(sub_workers=1, chips=1)

    @w.sub
    def s(args):
        args.tensor(0)[0] = os.getpid()

    @w.kernel
    def k(args, chip):
        args.tensor(0)[0] = os.getpid()

    w.init()
    a, b = w.alloc(1, np.int64), w.alloc(1, np.int64)
    w.submit_sub(s, tf.TaskArgs().output(a))
    w.submit_next_level(k, tf.TaskArgs().output(b))
    w.drain()
    assert len({int(a[0]), int(b[0]), os.getpid()}) == 3


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["register_sub", "register_kernel", "register_orch", "sub", "kernel", "orch"])
def test_registering_after_init_raises_worker_state_error(worker_factory, method):
    w = worker_factory(chips=1, sub_workers=1)
    w.init()
    with pytest.raises(tf.WorkerStateError) as e:
        getattr(w, method)(plain_sub)
    assert isinstance(e.value, RuntimeError)


@pytest.mark.timeout(60)
def test_registering_after_close_raises_worker_closed(worker_factory):
    w = worker_factory(sub_workers=1)
    w.init()
    w.close()
    with pytest.raises(tf.WorkerClosed):
        w.register_sub(plain_sub)


def test_handles_are_per_worker(worker_factory):
    w1 = worker_factory(sub_workers=1)
    w2 = worker_factory(sub_workers=1)
    h1 = w1.register_sub(plain_sub)
    h2 = w2.register_sub(plain_sub)
    w1.init()
    w2.init()
    with pytest.raises(ValueError):
        w1.submit_sub(h2)
    with pytest.raises(ValueError):
        w2.submit_sub(h1)
    a, b = w1.alloc(2), w2.alloc(2)
    w1.submit_sub(h1, tf.TaskArgs().output(a)).wait(timeout=30)
    w2.submit_sub(h2, tf.TaskArgs().output(b)).wait(timeout=30)
    assert np.all(a == 1) and np.all(b == 1)
