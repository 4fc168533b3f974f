"""`with tf.Worker(...) as w:` starts the children at once, and registering
inside the block still works while no work has been submitted: the children
are re-forked so they know every function (docs/behaviour.md, "The with
block")."""
import numpy as np
import pytest

import tierflow as tf
from conftest import process_running, wait_until


def fill(args):
    args.tensor(0)[...] = args.scalar(0)


def chip_fill(args, chip):
    args.tensor(0)[...] = chip.chip_id + 100


@pytest.mark.timeout(60)
def test_registering_inside_the_block_reforks_the_children():
    with tf.Worker(level=3, chips=2, sub_workers=2) as w:
        first = list(w.pids().values())
        assert len(first) == 4 and all(process_running(p) for p in first)
        h = w.register_sub(fill)
        k = w.register_kernel(chip_fill)
        a, b = w.alloc(8), w.alloc(8)
        w.submit_sub(h, tf.TaskArgs().output(a).scalar(3.5))
        w.submit_next_level(k, tf.TaskArgs().output(b), worker=1)
        w.drain()
        second = list(w.pids().values())
        assert set(first).isdisjoint(second)
        assert wait_until(lambda: not any(process_running(p) for p in first), timeout=5)
        np.testing.assert_array_equal(a, 3.5)
        np.testing.assert_array_equal(b, 101)
    assert not any(process_running(p) for p in second)


@pytest.mark.timeout(60)
def test_init_inside_the_block_is_harmless():
    with tf.Worker(level=3, sub_workers=1) as w:
        h = w.register_sub(fill)
        assert w.init() is w
        assert w.init() is w
        out = w.alloc(4)
        w.submit_sub(h, tf.TaskArgs().output(out).scalar(2)).wait(timeout=10)
        np.testing.assert_array_equal(out, 2)


@pytest.mark.timeout(60)
def test_arrays_allocated_before_a_late_registration_keep_their_contents():
    with tf.Worker(level=3, sub_workers=1) as w:
        data = w.share(np.arange(16, dtype=np.float64))
        h = w.register_sub(lambda args: args.tensor(0).__imul__(2))
        w.submit_sub(h, tf.TaskArgs().inout(data)).wait(timeout=10)
        np.testing.assert_array_equal(data, np.arange(16) * 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("first_use", ["submit", "scope"])
def test_registering_after_work_started_is_a_state_error(first_use):
    with tf.Worker(level=3, sub_workers=1) as w:
        h = w.register_sub(fill)
        if first_use == "submit":
            w.submit_sub(h, tf.TaskArgs().output(w.alloc(1)).scalar(1)).wait(timeout=10)
            with pytest.raises(tf.WorkerStateError, match="before init"):
                w.register_sub(fill)
        else:
            with w.scope():
                with pytest.raises(tf.WorkerStateError, match="before init"):
                    w.register_sub(fill)


@pytest.mark.timeout(60)
def test_explicit_init_still_forbids_late_registration():
    w = tf.Worker(level=3, sub_workers=1)
    w.init()
    try:
        with pytest.raises(tf.WorkerStateError, match="before init"):
            w.register_sub(fill)
        with w:  # entering an initialised Worker keeps the rule
            with pytest.raises(tf.WorkerStateError):
                w.register_sub(fill)
    finally:
        w.close()


@pytest.mark.timeout(60)
def test_work_submitted_through_the_quick_path_also_closes_registration():
    w = tf.Worker(level=3, sub_workers=1)
    h = w.register_sub(fill)
    with w:  # registered before the block: the first submit takes the quick path
        w.submit_sub(h, tf.TaskArgs().output(w.alloc(1)).scalar(1))
        with pytest.raises(tf.WorkerStateError, match="before init"):
            w.register_sub(fill)


@pytest.mark.parametrize("started", [True, False])
def test_a_closed_worker_cannot_be_entered_again(started):
    w = tf.Worker(level=3, sub_workers=1)
    if started:
        w.init()
    w.close()
    with pytest.raises(tf.WorkerClosed, match="is closed"):
        with w:
            pass
