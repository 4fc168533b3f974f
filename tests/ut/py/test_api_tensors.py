"""Arena tensors and TaskArgs as a task sees them."""
import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(chips=1, sub_workers=1, arena_bytes=1 << 20)

    @w.sub
    def inspect(args):
        out = args.tensor(args.num_tensors - 1)
        info = []
        for i in range(args.num_tensors - 1):
            t = args.tensor(i)
            info += [t.shape, t.strides, str(t.dtype), t.flags.writeable, args.tag(i).name]
        info += [args.scalar(i) for i in range(args.num_scalars)]
        text = repr(info).encode()
        out[: len(text)] = np.frombuffer(text, np.uint8)

    @w.sub
    def write_input(args):
        args.tensor(0)[0] = 1

    @w.kernel
    def negate(args, chip):
        src, dst = args.tensor(0), args.tensor(1)
        dst[...] = -src

    w.init()
    w.h = dict(inspect=inspect, write_input=write_input, negate=negate)
    return w


def run_inspect(w, args):
    out = w.alloc(4096, np.uint8)
    out[:] = 0
    w.submit_sub(w.h["inspect"], args.output(out)).wait(timeout=10)
    return eval(bytes(out).rstrip(b"\0").decode())  # noqa: S307 - our own repr


def test_task_sees_shapes_strides_dtypes_tags_and_scalars(w):
    a = w.alloc((6, 8), np.float32)
    b = w.alloc(10, np.int16)
    c = w.alloc((3, 3), np.complex128)
    view = a[1:5:2, ::-3]
    info = run_inspect(w, tf.TaskArgs().input(view).scalar(7).inout(b[::2]).scalar(2.5).no_dep(c.T))
    assert info[0:5] == [view.shape, view.strides, "float32", False, "INPUT"]
    assert info[5:10] == [(5,), (4,), "int16", True, "INOUT"]
    assert info[10:15] == [(3, 3), c.T.strides, "complex128", True, "NO_DEP"]
    assert info[15:] == [7, 2.5]
    assert isinstance(info[15], int) and isinstance(info[16], float)


def test_inputs_are_read_only_inside_the_task(w):
    a = w.alloc(4)
    t = w.submit_sub(w.h["write_input"], tf.TaskArgs().input(a))
    err = t.exception(timeout=10)
    assert err is not None and "read-only" in err.failures[0].message
    with pytest.raises(tf.TaskError):
        w.drain()


def test_kernel_reads_and_writes_zero_copy(w):
    src = w.share(np.arange(12, dtype=np.float64).reshape(3, 4))
    dst = w.alloc((3, 4), np.float64)
    w.submit_next_level(w.h["negate"], tf.TaskArgs().input(src).output(dst)).wait(timeout=10)
    assert np.array_equal(dst, -np.arange(12).reshape(3, 4))


def test_builder_returns_itself_and_counts():
    a = tf.TaskArgs()
    assert a.scalar(1) is a
    assert (a.num_tensors, a.num_scalars) == (0, 1)


def test_share_copies_into_the_arena(w):
    src = np.arange(5, dtype=np.int64)
    s = w.share(src)
    src[0] = 99
    assert s.dtype == np.int64 and list(s) == [0, 1, 2, 3, 4]


def test_arena_memory_is_reused_once_released(w):
    for _ in range(50):  # 50 x 512 KiB through a 1 MiB arena
        a = w.alloc(512 * 1024, np.uint8)
        a[:] = 1
        del a


def test_arena_memory_is_held_while_referenced(w):
    big = w.alloc(700 * 1024, np.uint8)
    with pytest.raises(MemoryError):
        w.alloc(700 * 1024, np.uint8)
    del big
    w.alloc(700 * 1024, np.uint8)


def test_an_unfinished_task_keeps_its_tensors_alive(make_worker):
    w = make_worker(sub_workers=1, arena_bytes=1 << 20)

    @w.sub
    def slow_fill(args):
        import time
        time.sleep(0.3)
        args.tensor(0)[...] = 5

    w.init()
    big = w.alloc(700 * 1024, np.uint8)
    t = w.submit_sub(slow_fill, tf.TaskArgs().output(big))
    del big  # the task still holds the block
    with pytest.raises(MemoryError):
        w.alloc(700 * 1024, np.uint8)
    t.wait(timeout=10)
    w.alloc(700 * 1024, np.uint8)


def test_exhaustion_names_arena_size_and_request(w):
    with pytest.raises(tf.ArenaExhausted) as e:
        w.alloc(2 << 20, np.uint8)
    assert isinstance(e.value, MemoryError)
    assert str(1 << 20) in str(e.value) and str(2 << 20) in str(e.value)


def test_alloc_rejects_object_dtypes(w):
    with pytest.raises(TypeError):
        w.alloc(3, object)
