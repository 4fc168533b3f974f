"""TaskArgs (contract section 3): the builder, and what a task sees: the same
shape/dtype/strides as submitted, read-only inputs, writable outputs,
scalars and tags, in the order each kind was added."""
import numpy as np
import pytest

import tierflow as tf

DESC = 64  # int64 slots per described tensor


def dtype_code(dt):
    return dt.itemsize * 1000 + ord(dt.kind)


def describe(args):
    """The last tensor is an int64 (n, DESC) report: one row per other tensor."""
    out = args.tensor(args.num_tensors - 1)
    for i in range(args.num_tensors - 1):
        t = args.tensor(i)
        row = [t.ndim, *t.shape, *t.strides, dtype_code(t.dtype), int(t.flags.writeable), int(args.tag(i).value)]
        out[i, :len(row)] = row
        out[i, len(row):] = -7


def expected_row(t, tag):
    row = [t.ndim, *t.shape, *t.strides, dtype_code(t.dtype), int(tag != tf.Tag.INPUT), int(tag.value)]
    return row + [-7] * (DESC - len(row))


def try_write_input(args):
    """Reports in tensor 1: [writeable flag, ValueError raised on write, value unchanged]."""
    src, report = args.tensor(0), args.tensor(1)
    before = src.copy()
    raised = 0
    try:
        src[...] = 123
    except ValueError:
        raised = 1
    report[:] = [int(src.flags.writeable), raised, int(np.array_equal(src, before))]


def scalars_out(args):
    ints, floats = args.tensor(0), args.tensor(1)
    for i in range(args.num_scalars):
        v = args.scalar(i)
        if isinstance(v, float):
            floats[i] = v
            ints[i] = -1
        else:
            ints[i] = v
            floats[i] = np.nan


def write_pattern(args):
    """Every writable tensor t gets t[...] = index grid * 10 + scalar(0)."""
    for i in range(args.num_tensors):
        if args.tag(i) in (tf.Tag.OUTPUT, tf.Tag.INOUT):
            t = args.tensor(i)
            t[...] = np.arange(t.size).reshape(t.shape) * 10 + args.scalar(0)


def check_empty(args):
    if args.num_tensors != 0 or args.num_scalars != 0:
        raise AssertionError("expected no tensors and no scalars")


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=1, sub_workers=1)
    w.h = {"describe": w.register_sub(describe), "kdescribe": w.register_kernel(lambda a, c: describe(a)),
           "try_write": w.register_sub(try_write_input),
           "ktry_write": w.register_kernel(lambda a, c: try_write_input(a)),
           "scalars": w.register_sub(scalars_out), "pattern": w.register_sub(write_pattern),
           "kpattern": w.register_kernel(lambda a, c: write_pattern(a)),
           "noop": w.register_sub(check_empty), "knoop": w.register_kernel(lambda a, c: check_empty(a))}
    w.init()
    return w


def test_builder_methods_return_the_same_task_args(w):
    a = w.alloc(4)
    args = tf.TaskArgs()
    assert args.input(a) is args and args.output(a) is args and args.inout(a) is args
    assert args.no_dep(a) is args and args.scalar(1) is args and args.scalar(2.5) is args
    assert args.num_tensors == 4 and args.num_scalars == 2
    assert [args.tag(i) for i in range(4)] == [tf.Tag.INPUT, tf.Tag.OUTPUT, tf.Tag.INOUT, tf.Tag.NO_DEP]


def test_tag_enum_members():
    assert {t.name for t in tf.Tag} >= {"INPUT", "OUTPUT", "INOUT", "NO_DEP"}
    assert len({tf.Tag.INPUT, tf.Tag.OUTPUT, tf.Tag.INOUT, tf.Tag.NO_DEP}) == 4


CASES = {
    "contiguous 1d f64": lambda w: w.alloc(10, np.float64),
    "2d int32": lambda w: w.alloc((3, 7), np.int32),
    "step slice": lambda w: w.alloc(50, np.float32)[3:40:4],
    "column of 2d": lambda w: w.alloc((6, 5), np.int64)[:, 2],
    "block of 2d": lambda w: w.alloc((8, 9), np.float64)[1:7:2, 2:8:3],
    "transposed": lambda w: w.alloc((4, 6), np.int16).T,
    "negative stride": lambda w: w.alloc(20, np.uint8)[::-3],
    "3d uint16": lambda w: w.alloc((2, 3, 4), np.uint16)[:, ::2, 1:],
    "0d view": lambda w: w.alloc(5, np.float64)[2, ...],
    "complex": lambda w: w.alloc((3, 3), np.complex128)[::2],
    "bool": lambda w: w.alloc(9, np.bool_)[1::2],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("where", ["sub", "chip"])
def test_task_sees_shape_strides_dtype_and_tags(w, case, where):
    views = [CASES[case](w) for _ in range(4)]
    tags = [tf.Tag.INPUT, tf.Tag.OUTPUT, tf.Tag.INOUT, tf.Tag.NO_DEP]
    report = w.alloc((4, DESC), np.int64)
    args = tf.TaskArgs().input(views[0]).output(views[1]).inout(views[2]).no_dep(views[3]).output(report)
    if where == "sub":
        w.submit_sub(w.h["describe"], args)
    else:
        w.submit_next_level(w.h["kdescribe"], args)
    w.drain()
    for i in range(4):
        assert list(report[i]) == expected_row(views[i], tags[i]), (case, tags[i])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("handle", ["try_write", "ktry_write"])
def test_inputs_are_read_only_inside_the_task(w, handle):
    src = w.share(np.arange(6, dtype=np.float64))
    report = w.alloc(3, np.int64)
    args = tf.TaskArgs().input(src).output(report)
    if handle == "try_write":
        w.submit_sub(w.h[handle], args)
    else:
        w.submit_next_level(w.h[handle], args)
    w.drain()
    assert list(report) == [0, 1, 1]  # not writeable, writing raised ValueError, nothing changed
    assert np.array_equal(src, np.arange(6))


@pytest.mark.timeout(60)
def test_outputs_inouts_and_no_dep_are_writable(w):
    views = [w.alloc((3, 4), np.int64)[:, 1:3] for _ in range(3)]
    args = tf.TaskArgs().output(views[0]).inout(views[1]).no_dep(views[2]).scalar(5)
    w.submit_sub(w.h["pattern"], args)
    w.drain()
    assert np.array_equal(views[0], np.arange(6).reshape(3, 2) * 10 + 5)
    assert np.array_equal(views[1], np.arange(6).reshape(3, 2) * 10 + 5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["sub", "chip"])
def test_writes_through_a_strided_view_touch_only_its_elements(w, where):
    base = w.alloc((6, 8), np.int64)
    base[...] = -1
    view = base[1:5:2, ::3]
    args = tf.TaskArgs().output(view).scalar(1)
    if where == "sub":
        w.submit_sub(w.h["pattern"], args)
    else:
        w.submit_next_level(w.h["kpattern"], args)
    w.drain()
    expected = np.full((6, 8), -1, np.int64)
    expected[1:5:2, ::3] = np.arange(6).reshape(2, 3) * 10 + 1
    assert np.array_equal(base, expected)


@pytest.mark.timeout(60)
def test_negative_stride_output(w):
    base = w.alloc(10, np.int32)
    base[:] = 0
    w.submit_sub(w.h["pattern"], tf.TaskArgs().output(base[8::-2]).scalar(3))
    w.drain()
    assert list(base) == [43, 0, 33, 0, 23, 0, 13, 0, 3, 0]


@pytest.mark.timeout(60)
def test_scalars_round_trip_in_order(w):
    values = [0, -1, 2**62, -(2**63), 1.5, -0.0, 1e-300, np.int32(7), np.float32(0.25), 3]
    ints, floats = w.alloc(len(values), np.int64), w.alloc(len(values), np.float64)
    args = tf.TaskArgs()
    # Tensors and scalars interleaved: each kind keeps its own order.
    args.scalar(values[0]).output(ints)
    for v in values[1:5]:
        args.scalar(v)
    args.output(floats)
    for v in values[5:]:
        args.scalar(v)
    assert args.num_scalars == len(values) and args.num_tensors == 2
    w.submit_sub(w.h["scalars"], args)
    w.drain()
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)):
            assert floats[i] == float(v) and ints[i] == -1, (i, v)
        else:
            assert ints[i] == int(v), (i, v)


@pytest.mark.timeout(60)
def test_empty_task_args_and_none_run(w):
    ts = [w.submit_sub(w.h["noop"], tf.TaskArgs()), w.submit_sub(w.h["noop"], None),
          w.submit_next_level(w.h["knoop"]), w.submit_next_level(w.h["knoop"], tf.TaskArgs())]
    w.drain()
    for t in ts:
        t.wait(timeout=10)
        assert t.state in ("completed", "consumed")


def test_task_args_reports_counts_and_tags_in_the_parent(w):
    a, b = w.alloc(3), w.alloc(3)
    args = tf.TaskArgs().scalar(1).inout(a).scalar(2.0).input(b).no_dep(a)
    assert args.num_tensors == 3 and args.num_scalars == 2
    assert args.tag(0) == tf.Tag.INOUT and args.tag(1) == tf.Tag.INPUT and args.tag(2) == tf.Tag.NO_DEP
    assert isinstance(args.tag(0), tf.Tag)


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(chips=1, sub_workers=1, arena_bytes=1 << 20)

    @wk.sub
    def inspect(args):
        out = args.tensor(args.num_tensors - 1)
        info = []
        for i in range(args.num_tensors - 1):
            t = args.tensor(i)
            info += [t.shape, t.strides, str(t.dtype), t.flags.writeable, args.tag(i).name]
        info += [args.scalar(i) for i in range(args.num_scalars)]
        text = repr(info).encode()
        out[: len(text)] = np.frombuffer(text, np.uint8)

    @wk.sub
    def write_input(args):
        args.tensor(0)[0] = 1

    @wk.kernel
    def negate(args, chip):
        src, dst = args.tensor(0), args.tensor(1)
        dst[...] = -src

    wk.init()
    wk.h = dict(inspect=inspect, write_input=write_input, negate=negate)
    return wk


def run_inspect(wk, args):
    out = wk.alloc(4096, np.uint8)
    out[:] = 0
    wk.submit_sub(wk.h["inspect"], args.output(out)).wait(timeout=10)
    return eval(bytes(out).rstrip(b"\0").decode())  # noqa: S307 - our own repr


def test_task_sees_shapes_strides_dtypes_tags_and_scalars(wk):
    a = wk.alloc((6, 8), np.float32)
    b = wk.alloc(10, np.int16)
    c = wk.alloc((3, 3), np.complex128)
    view = a[1:5:2, ::-3]
    info = run_inspect(wk, tf.TaskArgs().input(view).scalar(7).inout(b[::2]).scalar(2.5).no_dep(c.T))
    assert info[0:5] == [view.shape, view.strides, "float32", False, "INPUT"]
    assert info[5:10] == [(5,), (4,), "int16", True, "INOUT"]
    assert info[10:15] == [(3, 3), c.T.strides, "complex128", True, "NO_DEP"]
    assert info[15:] == [7, 2.5]
    assert isinstance(info[15], int) and isinstance(info[16], float)


def test_writing_an_input_fails_the_task(wk):
    a = wk.alloc(4)
    t = wk.submit_sub(wk.h["write_input"], tf.TaskArgs().input(a))
    err = t.exception(timeout=10)
    assert err is not None and "read-only" in err.failures[0].message
    with pytest.raises(tf.TaskError):
        wk.drain()


def test_kernel_reads_and_writes_zero_copy(wk):
    src = wk.share(np.arange(12, dtype=np.float64).reshape(3, 4))
    dst = wk.alloc((3, 4), np.float64)
    wk.submit_next_level(wk.h["negate"], tf.TaskArgs().input(src).output(dst)).wait(timeout=10)
    assert np.array_equal(dst, -np.arange(12).reshape(3, 4))


def test_builder_returns_itself_and_counts():
    a = tf.TaskArgs()
    assert a.scalar(1) is a
    assert (a.num_tensors, a.num_scalars) == (0, 1)


def test_share_copies_into_the_arena(wk):
    src = np.arange(5, dtype=np.int64)
    s = wk.share(src)
    src[0] = 99
    assert s.dtype == np.int64 and list(s) == [0, 1, 2, 3, 4]


def test_arena_memory_is_reused_once_released(wk):
    for _ in range(50):  # 50 x 512 KiB through a 1 MiB arena
        a = wk.alloc(512 * 1024, np.uint8)
        a[:] = 1
        del a


def test_arena_memory_is_held_while_referenced(wk):
    big = wk.alloc(700 * 1024, np.uint8)
    with pytest.raises(MemoryError):
        wk.alloc(700 * 1024, np.uint8)
    del big
    wk.alloc(700 * 1024, np.uint8)


def test_an_unfinished_task_keeps_its_tensors_alive(make_worker):
    wk = make_worker(sub_workers=1, arena_bytes=1 << 20)

    @wk.sub
    def slow_fill(args):
        import time
        time.sleep(0.3)
        args.tensor(0)[...] = 5

    wk.init()
    big = wk.alloc(700 * 1024, np.uint8)
    t = wk.submit_sub(slow_fill, tf.TaskArgs().output(big))
    del big  # the task still holds the block
    with pytest.raises(MemoryError):
        wk.alloc(700 * 1024, np.uint8)
    t.wait(timeout=10)
    wk.alloc(700 * 1024, np.uint8)


def test_exhaustion_names_arena_size_and_request(wk):
    with pytest.raises(tf.ArenaExhausted) as e:
        wk.alloc(2 << 20, np.uint8)
    assert isinstance(e.value, MemoryError)
    assert str(1 << 20) in str(e.value) and str(2 << 20) in str(e.value)


def test_alloc_rejects_object_dtypes(wk):
    with pytest.raises(TypeError):
        wk.alloc(3, object)
