"""Dependencies are inferred from tags and byte ranges (contract section 5)."""
import time

import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(sub_workers=2, chips=2, window=64)

    @w.sub
    def slow_write(args):
        time.sleep(args.scalar(1))
        args.tensor(0)[...] = args.scalar(0)

    @w.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    @w.sub
    def wait_for_flag(args):
        # Succeeds only if another task sets the flag while this one runs.
        flag = args.tensor(0)
        deadline = time.monotonic() + 5
        while flag[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        args.tensor(1)[0] = flag[0]

    @w.kernel
    def set_flag(args, chip):
        time.sleep(0.05)
        args.tensor(0)[0] = 1

    w.init()
    w.h = dict(slow_write=slow_write, copy=copy, wait_for_flag=wait_for_flag, set_flag=set_flag)
    return w


def test_read_after_write(w):
    a, b = w.alloc(4), w.alloc(4)
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a).scalar(3.0).scalar(0.2))
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b))
    w.drain()
    assert np.all(b == 3)


def test_write_after_read(w):
    a, b = w.share(np.full(4, 1.0, np.float32)), w.alloc(4)
    # The reader is slow to start because its input is produced slowly; the
    # later writer of `a` must still wait for the reader.
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(b).scalar(0.0).scalar(0.2))
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).inout(b))
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a).scalar(9.0).scalar(0.0))
    w.drain()
    assert np.all(b == 1) and np.all(a == 9)


def test_write_after_write(w):
    a = w.alloc(4)
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a).scalar(1.0).scalar(0.2))
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a).scalar(2.0).scalar(0.0))
    w.drain()
    assert np.all(a == 2)


def test_overlapping_strided_views_conflict(w):
    a = w.alloc(16)
    b = w.alloc(16)
    w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a[0:8:2]).scalar(4.0).scalar(0.2))
    # a[0:8:2] spans bytes [0, 28); a[6:14] starts at byte 24: the views overlap.
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(a[6:14]).output(b[0:8]))
    w.drain()
    assert b[0] == 4  # a[6] was written by the first task before the copy


def test_disjoint_slices_of_one_buffer_run_concurrently(w):
    buf = w.alloc(32, np.int64)
    buf[:] = 0
    out = w.alloc(1, np.int64)
    # The sub-worker task waits for the chip task to raise a flag (buf[0],
    # untracked); their tracked tensors are disjoint slices of the same
    # buffer, so the engine must let them run at the same time.
    w.submit_sub(w.h["wait_for_flag"], tf.TaskArgs().no_dep(buf[0:1]).output(out).output(buf[1:8]))
    w.submit_next_level(w.h["set_flag"], tf.TaskArgs().no_dep(buf[0:1]).output(buf[16:32]))
    w.drain()
    assert out[0] == 1


def test_disjoint_slices_are_independent_in_the_graph(w):
    buf = w.alloc(64)
    t1 = w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(buf[0:32]).scalar(1.0).scalar(2.0))
    t2 = w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(buf[32:64]).scalar(2.0).scalar(0.0))
    t2.wait(timeout=10)
    assert not t1.done()  # t2 did not wait for t1
    w.drain()
    assert np.all(buf[:32] == 1) and np.all(buf[32:] == 2)


def test_no_dep_tensors_are_not_tracked(w):
    a = w.alloc(4)
    t1 = w.submit_sub(w.h["slow_write"], tf.TaskArgs().output(a).scalar(1.0).scalar(2.0))
    b = w.alloc(4)
    t2 = w.submit_sub(w.h["copy"], tf.TaskArgs().no_dep(a).output(b))
    t2.wait(timeout=10)
    assert not t1.done()
    w.drain()
