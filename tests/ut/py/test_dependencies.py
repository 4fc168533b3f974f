"""Inferred dependencies (contract section 5): read-after-write,
write-after-read and write-after-write are honoured; disjoint slices,
distinct allocations, shared readers and no_dep tensors do not wait.

"Runs concurrently" is proven without timing: two tasks rendezvous through
a no_dep flag array, which only succeeds if both run at the same time."""
import time

import numpy as np
import pytest

import tierflow as tf
from conftest import register_everywhere, rendezvous, submit_to

def exclusive(args):
    """Tensor 0: inout (x += 1); tensor 1 (no_dep): busy flags; scalar: me.
    Records in busy[-1] if another task held its flag at the same time."""
    data, busy = args.tensor(0), args.tensor(1)
    me = args.scalar(0)
    busy[me] = 1
    time.sleep(0.05)
    others = [i for i in range(len(busy) - 1) if i != me and busy[i]]
    if others:
        busy[-1] = 1
    data[...] += 1
    busy[me] = 0


def slow_copy(args):
    time.sleep(args.scalar(0))
    args.tensor(1)[...] = args.tensor(0)


def slow_set(args):
    time.sleep(args.scalar(0))
    args.tensor(0)[...] = args.scalar(1)


def affine(args):
    x = args.tensor(0)
    x[...] = x * 2 + args.scalar(0)


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=2, sub_workers=2, window=64)
    w.h = register_everywhere(w, {"rendezvous": rendezvous, "exclusive": exclusive, "copy": slow_copy,
                                  "set": slow_set, "affine": affine})
    w.init()
    return w


def submit(w, name, args, where):
    return submit_to(w, w.h, name, args, where)


def flags(w, n):
    f = w.alloc(n + 1, np.int32)
    f[:] = 0
    return f


# ---------------------------------------------------------------- ordering
@pytest.mark.timeout(60)
@pytest.mark.parametrize("first, second", [("sub", "sub"), ("sub", "chip"), ("chip0", "chip1"), ("chip", "sub")])
def test_read_after_write(w, first, second):
    x, y = w.alloc(32, np.float64), w.alloc(32, np.float64)
    x[:] = 0
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.2).scalar(5.0), first)
    submit(w, "copy", tf.TaskArgs().input(x).output(y).scalar(0.0), second)
    w.drain()
    assert np.all(y == 5.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reader, writer", [("sub", "sub"), ("sub", "chip"), ("chip0", "chip1")])
def test_write_after_read(w, reader, writer):
    x, y = w.share(np.full(16, 3.0)), w.alloc(16, np.float64)
    submit(w, "copy", tf.TaskArgs().input(x).output(y).scalar(0.2), reader)
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.0).scalar(99.0), writer)
    w.drain()
    assert np.all(y == 3.0) and np.all(x == 99.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("a, b", [("sub", "sub"), ("chip0", "chip1"), ("chip", "sub")])
def test_write_after_write(w, a, b):
    x = w.alloc(16, np.float64)
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.2).scalar(1.0), a)
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.0).scalar(2.0), b)
    w.drain()
    assert np.all(x == 2.0)


@pytest.mark.timeout(60)
def test_long_order_sensitive_chain_across_workers(w):
    x = w.share(np.zeros(8, np.int64))
    expected = np.zeros(8, np.int64)
    where = ["sub", "chip", "chip0", "chip1"]
    for k in range(60):
        submit(w, "affine", tf.TaskArgs().inout(x).scalar(k % 7), where[k % 4])
        expected = (expected * 2 + k % 7) % (1 << 62)
        if k % 20 == 19:  # keep it within int64 in both worlds
            submit(w, "set", tf.TaskArgs().output(x).scalar(0.0).scalar(k), "sub")
            expected[:] = k
    w.drain()
    assert np.array_equal(x, expected)


@pytest.mark.timeout(60)
def test_many_readers_then_a_writer(w):
    x = w.alloc(8, np.float64)
    ys = [w.alloc(8, np.float64) for _ in range(4)]
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.1).scalar(1.0), "sub")
    for i, y in enumerate(ys):
        submit(w, "copy", tf.TaskArgs().input(x).output(y).scalar(0.1), ["sub", "chip0", "sub", "chip1"][i])
    submit(w, "set", tf.TaskArgs().output(x).scalar(0.0).scalar(2.0), "chip")
    w.drain()
    assert all(np.all(y == 1.0) for y in ys) and np.all(x == 2.0)


@pytest.mark.timeout(60)
def test_partially_overlapping_slices_are_ordered(w):
    x = w.share(np.zeros(20))
    y = w.alloc(10, np.float32)
    submit(w, "set", tf.TaskArgs().output(x[0:10]).scalar(0.2).scalar(4.0), "chip0")
    submit(w, "copy", tf.TaskArgs().input(x[9:19]).output(y).scalar(0.0), "sub")
    w.drain()
    assert y[0] == 4.0 and np.all(y[1:] == 0.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape, views", [
    (10, lambda x: (x[0:6], x[4:10])),        # overlapping ranges
    (10, lambda x: (x[0::2], x[0::3])),       # strided views sharing x[0], x[6]
    (10, lambda x: (x, x[3:4])),              # whole and part
    ((5, 4), lambda x: (x[:, 0:2], x[1:3])),  # a column block and a row block cross
    ((4, 4), lambda x: (x[:, 1], x.T[1])),    # the same column, through a transpose
], ids=["overlap", "strided-shared", "whole-part", "column-row", "transpose"])
def test_conflicting_writers_never_overlap_in_time(w, shape, views):
    x = w.share(np.zeros(shape))
    a, b = views(x)
    busy = flags(w, 4)
    for i in range(4):
        submit(w, "exclusive", tf.TaskArgs().inout(a if i % 2 == 0 else b).no_dep(busy).scalar(i),
               ["sub", "chip0", "sub", "chip1"][i])
    w.drain()
    assert busy[-1] == 0, "two conflicting tasks ran at the same time"
    assert np.all(a >= 2) and np.all(b >= 2)


# ------------------------------------------------------------- concurrency
@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape, views", [
    (16, lambda x: (x[0::2], x[1::2])),                    # even / odd elements
    ((6, 8), lambda x: (x[:, 0:4], x[:, 4:8])),            # column blocks: spans overlap, bytes do not
    ((8, 8), lambda x: (x[0:4, 4:8], x[4:8, 0:4])),        # tiles of a 2-D blocking
    ((2, 3, 4), lambda x: (x[:, :, 1], x[:, 1:, 0])),      # 3-D slices
    ((6, 8), lambda x: (x[::-1, 0:2], x[:, 2:4])),         # a reversed view beside a column block
], ids=["even-odd", "columns", "tiles", "3d", "reversed"])
def test_strided_views_with_disjoint_bytes_run_concurrently(w, shape, views):
    x = w.share(np.zeros(shape, np.float64))
    a, b = views(x)
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().output(a).no_dep(f).scalar(0).scalar(1), "chip0")
    submit(w, "rendezvous", tf.TaskArgs().inout(b).no_dep(f).scalar(1).scalar(0), "chip1")
    w.drain()
    assert np.all(a == 1) and np.all(b == 2)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", [("sub", "sub"), ("sub", "chip"), ("chip0", "chip1")])
def test_disjoint_slices_of_one_allocation_run_concurrently(w, where):
    x = w.alloc(64, np.float64)
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().output(x[:32]).no_dep(f).scalar(0).scalar(1), where[0])
    submit(w, "rendezvous", tf.TaskArgs().inout(x[32:]).no_dep(f).scalar(1).scalar(0), where[1])
    w.drain()
    assert np.all(x[:32] == 1) and np.all(x[32:] == 2)


@pytest.mark.timeout(60)
def test_disjoint_rows_of_a_2d_allocation_run_concurrently(w):
    x = w.alloc((4, 16), np.int32)
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().output(x[0:2]).no_dep(f).scalar(0).scalar(1), "chip0")
    submit(w, "rendezvous", tf.TaskArgs().output(x[2:4]).no_dep(f).scalar(1).scalar(0), "chip1")
    w.drain()
    assert np.all(x[0:2] == 1) and np.all(x[2:4] == 2)


@pytest.mark.timeout(60)
def test_distinct_allocations_run_concurrently(w):
    x, y = w.alloc(8), w.alloc(8)
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().inout(x).no_dep(f).scalar(0).scalar(1), "sub")
    submit(w, "rendezvous", tf.TaskArgs().inout(y).no_dep(f).scalar(1).scalar(0), "sub")
    w.drain()
    assert np.all(x == 1) and np.all(y == 2)


@pytest.mark.timeout(60)
def test_two_readers_of_one_buffer_run_concurrently(w):
    x = w.share(np.ones(8))
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().input(x).no_dep(f).scalar(0).scalar(1), "sub")
    submit(w, "rendezvous", tf.TaskArgs().input(x).no_dep(f).scalar(1).scalar(0), "chip")
    w.drain()
    assert np.all(x == 1)


@pytest.mark.timeout(60)
def test_no_dep_tensor_does_not_wait_for_a_writer(w):
    x = w.alloc(8, np.float64)
    f = flags(w, 2)
    # The writer blocks until the later no_dep task has started: if no_dep
    # created a dependency on the writer, this would deadlock and time out.
    submit(w, "rendezvous", tf.TaskArgs().output(x).no_dep(f).scalar(0).scalar(1), "sub")
    submit(w, "rendezvous", tf.TaskArgs().no_dep(x).no_dep(f).scalar(1).scalar(0), "chip")
    w.drain()
    assert np.all(x == 1) or np.all(x == 2)


@pytest.mark.timeout(60)
def test_no_dep_writer_is_not_waited_for_by_a_reader(w):
    x, y = w.share(np.full(4, 6.0)), w.alloc(4, np.float64)
    f = flags(w, 2)
    submit(w, "rendezvous", tf.TaskArgs().no_dep(x).no_dep(f).scalar(0).scalar(1), "chip0")
    submit(w, "rendezvous", tf.TaskArgs().output(y).no_dep(f).input(x).scalar(1).scalar(0), "chip1")
    w.drain()
    assert np.all(y == 2)


# ------------------------------------------------------------------ groups
@pytest.mark.timeout(60)
def test_group_task_depends_on_the_union_of_its_members_tensors(worker_factory):
    w = worker_factory(chips=4, sub_workers=1)

    @w.kernel
    def part(args, chip):
        time.sleep(0.05 * chip.group_rank)
        args.tensor(1)[...] = args.tensor(0).sum() + chip.group_rank

    @w.sub
    def total(args):
        args.tensor(1)[0] = args.tensor(0).sum()

    @w.sub
    def late_set(args):
        time.sleep(0.2)
        args.tensor(0)[...] = 1.0

    w.init()
    x = w.share(np.zeros(8))
    parts = w.alloc(4, np.float64)
    out = w.alloc(1, np.float64)
    w.submit_sub(late_set, tf.TaskArgs().output(x[6:]))  # only member 3 reads this slice
    g = w.submit_group(part, [tf.TaskArgs().input(x[2 * r:2 * r + 2]).output(parts[r:r + 1]) for r in range(4)])
    w.submit_sub(total, tf.TaskArgs().input(parts).output(out))  # reads member outputs
    w.drain()
    assert list(parts) == [0, 1, 2, 5] and out[0] == 8
    assert g.done()


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(sub_workers=2, chips=2, window=64)

    @wk.sub
    def slow_write(args):
        time.sleep(args.scalar(1))
        args.tensor(0)[...] = args.scalar(0)

    @wk.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    @wk.sub
    def wait_for_flag(args):
        # Succeeds only if another task sets the flag while this one runs.
        flag = args.tensor(0)
        deadline = time.monotonic() + 5
        while flag[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        args.tensor(1)[0] = flag[0]

    @wk.kernel
    def set_flag(args, chip):
        time.sleep(0.05)
        args.tensor(0)[0] = 1

    wk.init()
    wk.h = dict(slow_write=slow_write, copy=copy, wait_for_flag=wait_for_flag, set_flag=set_flag)
    return wk


def test_read_after_write_waits_for_a_slow_producer(wk):
    a, b = wk.alloc(4), wk.alloc(4)
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a).scalar(3.0).scalar(0.2))
    wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).output(b))
    wk.drain()
    assert np.all(b == 3)


def test_write_after_read_waits_for_a_late_reader(wk):
    a, b = wk.share(np.full(4, 1.0, np.float32)), wk.alloc(4)
    # The reader is slow to start because its input is produced slowly; the
    # later writer of `a` must still wait for the reader.
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(b).scalar(0.0).scalar(0.2))
    wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a).inout(b))
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a).scalar(9.0).scalar(0.0))
    wk.drain()
    assert np.all(b == 1) and np.all(a == 9)


def test_write_after_write_keeps_the_last_value(wk):
    a = wk.alloc(4)
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a).scalar(1.0).scalar(0.2))
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a).scalar(2.0).scalar(0.0))
    wk.drain()
    assert np.all(a == 2)


def test_overlapping_strided_views_conflict(wk):
    a = wk.alloc(16)
    b = wk.alloc(16)
    wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a[0:8:2]).scalar(4.0).scalar(0.2))
    # a[0:8:2] spans bytes [0, 28); a[6:14] starts at byte 24: the views overlap.
    wk.submit_sub(wk.h["copy"], tf.TaskArgs().input(a[6:14]).output(b[0:8]))
    wk.drain()
    assert b[0] == 4  # a[6] was written by the first task before the copy


def test_disjoint_slices_of_one_buffer_run_concurrently(wk):
    buf = wk.alloc(32, np.int64)
    buf[:] = 0
    out = wk.alloc(1, np.int64)
    # The sub-worker task waits for the chip task to raise a flag (buf[0],
    # untracked); their tracked tensors are disjoint slices of the same
    # buffer, so the engine must let them run at the same time.
    wk.submit_sub(wk.h["wait_for_flag"], tf.TaskArgs().no_dep(buf[0:1]).output(out).output(buf[1:8]))
    wk.submit_next_level(wk.h["set_flag"], tf.TaskArgs().no_dep(buf[0:1]).output(buf[16:32]))
    wk.drain()
    assert out[0] == 1


def test_disjoint_slices_are_independent_in_the_graph(wk):
    buf = wk.alloc(64)
    t1 = wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(buf[0:32]).scalar(1.0).scalar(2.0))
    t2 = wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(buf[32:64]).scalar(2.0).scalar(0.0))
    t2.wait(timeout=10)
    assert not t1.done()  # t2 did not wait for t1
    wk.drain()
    assert np.all(buf[:32] == 1) and np.all(buf[32:] == 2)


def test_no_dep_tensors_are_not_tracked(wk):
    a = wk.alloc(4)
    t1 = wk.submit_sub(wk.h["slow_write"], tf.TaskArgs().output(a).scalar(1.0).scalar(2.0))
    b = wk.alloc(4)
    t2 = wk.submit_sub(wk.h["copy"], tf.TaskArgs().no_dep(a).output(b))
    t2.wait(timeout=10)
    assert not t1.done()
    wk.drain()
