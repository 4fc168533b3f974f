"""The shared arena (contract section 3): w.alloc / w.share, zero-copy
visibility in every child, reuse of freed memory, exhaustion."""
import gc
import time

import numpy as np
import pytest

import tierflow as tf

KIB = 1024


def wait_gate(gate):
    deadline = time.monotonic() + 30
    while gate[0] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(0.001)


def copy_when_open(args):
    src, dst, gate = args.tensor(0), args.tensor(1), args.tensor(2)
    wait_gate(gate)
    dst[...] = src


def add_one(args):
    args.tensor(0)[...] += 1


def chip_add_one(args, chip):
    args.tensor(0)[...] += 1


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=1, sub_workers=2, arena_bytes=256 * KIB)
    w.h = {"copy": w.register_sub(copy_when_open), "add": w.register_sub(add_one),
           "kadd": w.register_kernel(chip_add_one)}
    w.init()
    return w


def fill_arena(w, chunk_bytes, value):
    """Allocates chunks until the arena is full; returns them, filled with value."""
    chunks = []
    with pytest.raises(tf.ArenaExhausted):
        for _ in range(100000):
            c = w.alloc(chunk_bytes, np.uint8)
            c[:] = value
            chunks.append(c)
    return chunks


def test_alloc_shape_and_dtype(w):
    a = w.alloc(5)
    assert a.shape == (5,) and a.dtype == np.float32 and a.flags.writeable
    b = w.alloc((3, 4), np.int16)
    assert b.shape == (3, 4) and b.dtype == np.int16 and b.flags.c_contiguous
    c = w.alloc([2, 2, 2], dtype=np.complex128)
    assert c.shape == (2, 2, 2) and c.dtype == np.complex128
    b[...] = np.arange(12).reshape(3, 4)
    assert b[2, 3] == 11


def test_allocations_do_not_overlap(w):
    arrays = [w.alloc(100 + i, np.uint8) for i in range(20)]
    for i, a in enumerate(arrays):
        a[:] = i
    for i, a in enumerate(arrays):
        assert np.all(a == i)


@pytest.mark.timeout(60)
def test_alloc_is_zero_copy_in_both_directions(w):
    x = w.alloc(64, np.int64)
    x[:] = np.arange(64)  # written by the parent after alloc, before submit
    w.submit_sub(w.h["add"], tf.TaskArgs().inout(x))
    w.submit_next_level(w.h["kadd"], tf.TaskArgs().inout(x[10:20]))
    w.drain()
    expected = np.arange(64) + 1
    expected[10:20] += 1
    assert np.array_equal(x, expected)  # the child's writes landed in the parent's array


@pytest.mark.timeout(60)
def test_alloc_before_init_is_visible_in_children(worker_factory):
    w = worker_factory(sub_workers=1, arena_bytes=64 * KIB)
    h = w.register_sub(add_one)
    x = w.alloc(8, np.float64)
    x[:] = 1.5
    w.init()
    w.submit_sub(h, tf.TaskArgs().inout(x))
    w.drain()
    assert np.all(x == 2.5)


def test_share_copies_values_shape_and_dtype(w):
    src = np.arange(24, dtype=np.int32).reshape(4, 6)
    s = w.share(src)
    assert s.shape == src.shape and s.dtype == src.dtype and np.array_equal(s, src)
    src[0, 0] = 99  # a copy: the original is independent
    assert s[0, 0] == 0
    t = w.share(src[:, ::2].T)  # non-contiguous source
    assert np.array_equal(t, src[:, ::2].T)


@pytest.mark.timeout(60)
def test_share_then_task_reads_it(w):
    src = w.share(np.linspace(0, 1, 11))
    dst = w.alloc(11, np.float64)
    gate = w.share(np.ones(1, np.int32))
    w.submit_sub(w.h["copy"], tf.TaskArgs().input(src).output(dst).no_dep(gate))
    w.drain()
    assert np.array_equal(dst, np.linspace(0, 1, 11))


def test_exhaustion_raises_memory_error_naming_sizes(w):
    arena = 256 * KIB
    with pytest.raises(tf.ArenaExhausted) as e:
        w.alloc(arena + 8, np.uint8)
    assert isinstance(e.value, MemoryError)
    assert str(arena) in str(e.value) and str(arena + 8) in str(e.value)
    with pytest.raises(MemoryError) as e:
        w.share(np.zeros(40000, np.float64))
    assert str(arena) in str(e.value) and str(40000 * 8) in str(e.value)


def test_filling_the_arena_raises_and_live_arrays_stay_intact(w):
    keep = w.alloc(1000, np.uint8)
    keep[:] = 7
    chunks = fill_arena(w, 16 * KIB, 9)
    assert len(chunks) >= 10  # 256 KiB arena: most of it was usable
    assert np.all(keep == 7)
    assert all(np.all(c == 9) for c in chunks)


def test_memory_is_reused_once_no_array_refers_to_it(w):
    for i in range(100):  # 100 x 160 KiB through a 256 KiB arena
        a = w.alloc(160 * KIB, np.uint8)
        a[:] = i % 256
        del a
    chunks = fill_arena(w, 16 * KIB, 1)
    del chunks
    gc.collect()
    again = fill_arena(w, 16 * KIB, 2)  # everything was given back
    assert len(again) >= 10


def test_a_view_keeps_its_allocation_alive(w):
    a = w.alloc(4 * KIB, np.uint8)
    a[:] = 5
    view = a[100:200]
    del a
    gc.collect()
    chunks = fill_arena(w, 4 * KIB, 6)
    assert np.all(view == 5) and all(np.all(c == 6) for c in chunks)


@pytest.mark.timeout(60)
def test_memory_of_an_unfinished_task_is_not_reused(w):
    gate = w.alloc(1, np.int32)
    gate[:] = 0
    src = w.alloc(16 * KIB, np.uint8)
    src[:] = 7
    dst = w.alloc(16 * KIB, np.uint8)
    t = w.submit_sub(w.h["copy"], tf.TaskArgs().input(src).output(dst).no_dep(gate))
    del src  # only the unfinished task refers to it now
    gc.collect()
    chunks = fill_arena(w, 4 * KIB, 9)
    gate[0] = 1
    t.wait(timeout=30)
    assert np.all(dst == 7)
    assert all(np.all(c == 9) for c in chunks)


@pytest.mark.timeout(60)
def test_memory_is_reused_after_tasks_that_used_it_finished(w):
    for i in range(60):
        a = w.alloc(100 * KIB, np.uint8)
        a[:] = i % 200
        w.submit_sub(w.h["add"], tf.TaskArgs().inout(a))
        w.submit_next_level(w.h["kadd"], tf.TaskArgs().inout(a))
        del a  # the tasks still hold it; alloc never waits, so let them finish
        w.drain()
    gc.collect()
    assert len(fill_arena(w, 16 * KIB, 0)) >= 10


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                   np.int64, np.uint64, np.float16, np.float32, np.float64, np.complex64,
                                   np.complex128])
def test_numeric_dtypes(w, dtype):
    a = w.alloc((3, 5), dtype)
    a[...] = np.ones((3, 5), dtype)
    assert a.dtype == np.dtype(dtype) and a.shape == (3, 5) and np.all(a == np.ones((3, 5), dtype))


@pytest.mark.parametrize("dtype", ["datetime64[s]", "timedelta64[ms]"])
def test_dates_and_durations_are_refused_at_alloc_with_the_int64_way(w, dtype):
    # numpy gives these no buffer interface, so no task could receive one:
    # refused where the array is made, saying how to store them instead.
    with pytest.raises(TypeError, match="cannot be a task tensor .* view"):
        w.alloc(3, dtype)
    x = w.alloc(3, np.int64)
    x.view(dtype)[...] = np.array([1, 2, 3], dtype=dtype)
    assert x.tolist() == [1, 2, 3]
