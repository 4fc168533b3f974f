"""Bad input is rejected at the call, with an exception that says what was
wrong (contract sections 2-4 and the engine's documented choices)."""
import numpy as np
import pytest

import tierflow as tf


def noop(args):
    pass


def knoop(args, chip):
    pass


@pytest.fixture
def w(worker_factory):
    w = worker_factory(chips=2, sub_workers=1)
    w.s = w.register_sub(noop)
    w.k = w.register_kernel(knoop)
    w.o = w.register_orch(lambda orch, args: None)
    w.init()
    return w


@pytest.mark.parametrize("tag", ["input", "output", "inout"])
@pytest.mark.parametrize("make", [lambda: np.zeros(4), lambda: np.arange(10)[::2], lambda: np.ones((2, 2))])
def test_non_arena_array_is_a_value_error_with_the_hint(w, tag, make):
    with pytest.raises(ValueError) as e:
        w.submit_sub(w.s, getattr(tf.TaskArgs(), tag)(make()))
    assert "w.alloc" in str(e.value) or "w.share" in str(e.value)


def test_non_arena_array_to_a_chip_too(w):
    with pytest.raises(ValueError, match=r"w\.alloc|w\.share"):
        w.submit_next_level(w.k, tf.TaskArgs().input(np.zeros(3)))


def test_copy_of_an_arena_array_is_not_arena_backed(w):
    a = w.alloc(8)
    with pytest.raises(ValueError, match=r"w\.alloc|w\.share"):
        w.submit_sub(w.s, tf.TaskArgs().input(a.copy()))
    w.submit_sub(w.s, tf.TaskArgs().input(a[2:5]))  # a view is fine
    w.drain()


def test_array_from_another_workers_arena_is_rejected(w, worker_factory):
    other = worker_factory(sub_workers=1)
    with pytest.raises(ValueError):
        w.submit_sub(w.s, tf.TaskArgs().input(other.alloc(4)))


@pytest.mark.parametrize("call", ["sub_with_kernel", "next_with_sub", "group_with_sub", "next_with_orch"])
def test_wrong_handle_kind_is_a_type_error_naming_both_kinds(w, call):
    given, expected, fn = {
        "sub_with_kernel": ("KernelHandle", "SubHandle", lambda: w.submit_sub(w.k)),
        "next_with_sub": ("SubHandle", "KernelHandle", lambda: w.submit_next_level(w.s)),
        "group_with_sub": ("SubHandle", "KernelHandle", lambda: w.submit_group(w.s, [tf.TaskArgs()])),
        "next_with_orch": ("OrchHandle", "KernelHandle", lambda: w.submit_next_level(w.o)),
    }[call]
    with pytest.raises(TypeError) as e:
        fn()
    assert given in str(e.value) and expected in str(e.value)


def test_a_plain_function_is_not_a_handle(w):
    with pytest.raises(TypeError):
        w.submit_sub(noop)
    with pytest.raises(TypeError):
        w.submit_next_level(knoop)


def test_handle_from_another_worker_is_a_value_error(w, worker_factory):
    other = worker_factory(chips=2, sub_workers=1)
    s2, k2 = other.register_sub(noop), other.register_kernel(knoop)
    other.init()
    for call in (lambda: w.submit_sub(s2), lambda: w.submit_next_level(k2),
                 lambda: w.submit_group(k2, [tf.TaskArgs(), tf.TaskArgs()])):
        with pytest.raises(ValueError):
            call()


def test_register_after_init_is_a_worker_state_error(w):
    with pytest.raises(tf.WorkerStateError):
        w.register_sub(noop)
    with pytest.raises(tf.WorkerStateError):
        w.register_kernel(knoop)


def test_any_call_after_close_is_worker_closed(w):
    a = w.alloc(4)
    w.close()
    calls = [lambda: w.submit_sub(w.s), lambda: w.submit_next_level(w.k), lambda: w.drain(),
             lambda: w.submit_group(w.k, [tf.TaskArgs()]), lambda: w.alloc(4), lambda: w.share(np.ones(2)),
             lambda: w.stats(), lambda: w.pids(), lambda: w.run(lambda o, x: None),
             lambda: w.register_sub(noop), lambda: w.init(), lambda: w.scope().__enter__()]
    for call in calls:
        with pytest.raises(tf.WorkerClosed):
            call()
    assert np.all(a == a)  # arrays stay readable


@pytest.mark.parametrize("bad", ["x", None, [1.0], {"a": 1}, 1 + 1j, object()])
def test_non_numeric_scalar_is_a_type_error(bad):
    with pytest.raises(TypeError):
        tf.TaskArgs().scalar(bad)


@pytest.mark.parametrize("n_args, workers", [(2, [0]), (1, [0, 1]), (3, [0, 1])])
def test_group_args_and_workers_must_have_the_same_length(w, n_args, workers):
    with pytest.raises(ValueError):
        w.submit_group(w.k, [tf.TaskArgs() for _ in range(n_args)], workers=workers)


@pytest.mark.parametrize("index", [2, 7, -1])
def test_chip_index_out_of_range_is_value_error_and_index_error(w, index):
    with pytest.raises(ValueError) as e:
        w.submit_next_level(w.k, tf.TaskArgs(), worker=index)
    assert isinstance(e.value, IndexError)
    with pytest.raises(IndexError) as e:
        w.submit_group(w.k, [tf.TaskArgs()], workers=[index])
    assert isinstance(e.value, ValueError)


def test_submit_next_level_without_chips_is_a_value_error(worker_factory):
    w = worker_factory(sub_workers=1)
    k = w.register_kernel(knoop)
    w.init()
    with pytest.raises(ValueError):
        w.submit_next_level(k, tf.TaskArgs())
    with pytest.raises(ValueError):
        w.submit_group(k, [tf.TaskArgs()])


def test_submit_before_init_is_a_worker_state_error(worker_factory):
    w = worker_factory(chips=1, sub_workers=1)
    s, k = w.register_sub(noop), w.register_kernel(knoop)
    for call in (lambda: w.submit_sub(s), lambda: w.submit_next_level(k),
                 lambda: w.submit_group(k, [tf.TaskArgs()]), lambda: w.drain()):
        with pytest.raises(tf.WorkerStateError):
            call()


def test_bad_input_leaves_the_worker_usable(w):
    for bad in (lambda: w.submit_sub(w.k), lambda: w.submit_sub(w.s, tf.TaskArgs().input(np.zeros(2))),
                lambda: w.submit_next_level(w.k, worker=9)):
        with pytest.raises((TypeError, ValueError)):
            bad()
    x = w.alloc(2)
    t = w.submit_next_level(w.k, tf.TaskArgs().inout(x), worker=1)
    w.drain()
    assert t.done()
    assert w.stats()["submitted"] == 1  # rejected calls submitted nothing


def test_args_must_be_a_task_args(w):
    with pytest.raises(TypeError):
        w.submit_sub(w.s, (1, 2))
    with pytest.raises(TypeError):
        w.submit_group(w.k, tf.TaskArgs())  # not a list


def test_not_an_array_is_rejected_by_the_builder():
    for bad in ("abc", 3, [1.0, 2.0]):
        with pytest.raises((TypeError, ValueError)):
            tf.TaskArgs().input(bad)


def test_read_only_arena_array_cannot_be_an_output(w):
    a = w.alloc(4)
    a.flags.writeable = False
    with pytest.raises(ValueError):
        tf.TaskArgs().output(a)
    with pytest.raises(ValueError):
        tf.TaskArgs().inout(a)
    tf.TaskArgs().input(a)  # reading is fine


@pytest.mark.parametrize("kw, exc", [({"chips": -1}, ValueError), ({"sub_workers": -2}, ValueError),
                                     ({"window": 0}, ValueError), ({"chips": "2"}, TypeError),
                                     ({"window": 2.0}, TypeError), ({"level": 1}, ValueError)])
def test_bad_constructor_arguments(kw, exc):
    with pytest.raises(exc):
        tf.Worker(**{"level": 3, **kw})


# --- further cases -------------------------------------------------------

@pytest.fixture
def wk(make_worker):
    wk = make_worker(chips=2, sub_workers=1)
    wk.s = wk.register_sub(lambda a: None)
    wk.k = wk.register_kernel(lambda a, c: None)
    wk.init()
    return wk


def test_non_arena_array_is_rejected_with_the_hint(wk):
    with pytest.raises(ValueError, match=r"w\.alloc\(\).*w\.share\(\)"):
        wk.submit_sub(wk.s, tf.TaskArgs().input(np.zeros(4)))


def test_array_of_another_workers_arena_is_rejected(wk, make_worker):
    other = make_worker(sub_workers=1)
    foreign = other.alloc(8)
    with pytest.raises(ValueError, match="arena"):
        wk.submit_sub(wk.s, tf.TaskArgs().output(foreign))


def test_not_an_array_is_a_type_error():
    with pytest.raises(TypeError, match="w.alloc"):
        tf.TaskArgs().input("not an array")


def test_read_only_array_cannot_be_written(wk):
    a = wk.alloc(4)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        tf.TaskArgs().output(a)


def test_wrong_handle_kind_names_both_kinds(wk):
    with pytest.raises(TypeError, match="KernelHandle.*SubHandle|SubHandle.*KernelHandle"):
        wk.submit_next_level(wk.s)
    with pytest.raises(TypeError, match="SubHandle.*KernelHandle"):
        wk.submit_sub(wk.k)
    with pytest.raises(TypeError, match="KernelHandle"):
        wk.submit_group(wk.s, [tf.TaskArgs()])
    with pytest.raises(TypeError):
        wk.submit_sub(lambda a: None)


def test_handle_of_another_worker_is_a_value_error(wk, make_worker):
    other = make_worker(sub_workers=1, chips=1)
    s2 = other.register_sub(lambda a: None)
    k2 = other.register_kernel(lambda a, c: None)
    with pytest.raises(ValueError, match="another Worker"):
        wk.submit_sub(s2)
    with pytest.raises(ValueError, match="another Worker"):
        wk.submit_next_level(k2)


@pytest.mark.parametrize("bad", ["x", None, [1], 1 + 2j, b"1"])
def test_non_numeric_scalar_message_names_the_type(bad):
    with pytest.raises(TypeError, match="int or a float"):
        tf.TaskArgs().scalar(bad)


def test_numpy_scalars_are_accepted():
    a = tf.TaskArgs().scalar(np.int32(3)).scalar(np.float32(0.5)).scalar(True).scalar(2**40)
    assert a.num_scalars == 4


def test_group_arg_count_must_match_workers(wk):
    with pytest.raises(ValueError, match="one TaskArgs per worker"):
        wk.submit_group(wk.k, [tf.TaskArgs(), tf.TaskArgs()], workers=[0])
    with pytest.raises(ValueError, match="chip twice"):
        wk.submit_group(wk.k, [tf.TaskArgs(), tf.TaskArgs()], workers=[1, 1])
    with pytest.raises(ValueError, match="3 members need 3 chips"):
        wk.submit_group(wk.k, [tf.TaskArgs()] * 3)
    with pytest.raises(ValueError, match="at least one member"):
        wk.submit_group(wk.k, [])


@pytest.mark.parametrize("index", [2, -1, 99])
def test_chip_index_out_of_range_is_value_and_index_error(wk, index):
    with pytest.raises(ValueError, match="out of range") as e:
        wk.submit_next_level(wk.k, worker=index)
    assert isinstance(e.value, IndexError)
    with pytest.raises(IndexError):
        wk.submit_group(wk.k, [tf.TaskArgs()], workers=[index])


def test_chip_index_must_be_an_int(wk):
    with pytest.raises(TypeError):
        wk.submit_next_level(wk.k, worker="0")


def test_submit_next_level_without_chips(make_worker):
    wk = make_worker(sub_workers=1)
    k = wk.register_kernel(lambda a, c: None)
    wk.init()
    with pytest.raises(ValueError, match="chips=0"):
        wk.submit_next_level(k)


def test_submit_sub_without_sub_workers(make_worker):
    wk = make_worker(chips=1)
    s = wk.register_sub(lambda a: None)
    wk.init()
    with pytest.raises(ValueError, match="sub_workers=0"):
        wk.submit_sub(s)


def test_args_must_be_task_args(wk):
    with pytest.raises(TypeError, match="TaskArgs"):
        wk.submit_sub(wk.s, [1, 2])


def test_register_needs_a_callable(make_worker):
    with pytest.raises(TypeError, match="callable"):
        make_worker(sub_workers=1).register_sub(42)


def test_too_many_tensors_for_the_mailbox(wk):
    a = wk.alloc(1)
    args = tf.TaskArgs()
    for _ in range(500):
        args.input(a)
    with pytest.raises(ValueError, match="mailbox"):
        wk.submit_sub(wk.s, args)


# --- refused with a clear error instead of silently accepted --------------

def test_alloc_shape_must_hold_ints(wk):
    for bad in [(3.5,), 2.0, ("4",), (np.float64(2),)]:
        with pytest.raises(TypeError, match="shape"):
            wk.alloc(bad)
    assert wk.alloc((np.int64(2), 3)).shape == (2, 3)


def test_an_impossible_alloc_is_a_memory_error_naming_the_sizes(wk):
    with pytest.raises(MemoryError, match=r"arena of \d+ bytes") as e:
        wk.alloc((1 << 40, 1 << 40))
    assert isinstance(e.value, tf.ArenaExhausted)
    assert str((1 << 40) * (1 << 40) * 4) in str(e.value)


def test_zeros_and_full_initialise_and_alloc_defaults_to_float32(wk):
    assert wk.alloc(3).dtype == np.float32
    z = wk.zeros((2, 3), np.int16)
    assert z.dtype == np.int16 and np.all(z == 0)
    f = wk.full(4, 7.5)
    assert f.dtype == np.float64 and np.all(f == 7.5)
    assert wk.full(2, 3, np.int8).dtype == np.int8


@pytest.mark.parametrize("bad", [np.complex64(1 + 2j), __import__("decimal").Decimal("1.5"),
                                 __import__("fractions").Fraction(1, 3), np.array(3.0), np.array([1]), "3"])
def test_scalars_that_are_not_ints_or_floats_are_refused(bad):
    with pytest.raises(TypeError, match="int or a float"):
        tf.TaskArgs().scalar(bad)


@pytest.mark.timeout(60)
def test_bools_are_the_ints_zero_and_one_inside_tasks(make_worker):
    w = make_worker(sub_workers=1)
    h = w.register_sub(lambda args: [args.scalar(i) for i in range(args.num_scalars)])
    w.init()
    got = w.submit_sub(h, tf.TaskArgs().scalar(True).scalar(np.bool_(True)).scalar(np.bool_(False))
                       .scalar(np.float32(0.5)).scalar(np.int8(-3))).result(timeout=30)
    assert got == [1, 1, 0, 0.5, -3]
    assert [type(x) for x in got] == [int, int, int, float, int]


@pytest.mark.parametrize("bad", [True, False, np.bool_(True)])
def test_a_bool_is_not_a_chip_index(wk, bad):
    with pytest.raises(TypeError, match="bool"):
        wk.submit_next_level(wk.k, worker=bad)
    with pytest.raises(TypeError, match="bool"):
        wk.submit_group(wk.k, [tf.TaskArgs()], workers=[bad])


def test_a_native_kernel_cannot_be_a_sub(make_worker):
    w = make_worker(sub_workers=1)
    kernel = tf.NativeKernel(tf.native.demo_kernels_path(), "tf_noop")
    with pytest.raises(TypeError, match="register_kernel"):
        w.register_sub(kernel)
    with pytest.raises(TypeError, match="register_kernel"):
        w.register_orch(kernel)


@pytest.mark.timeout(60)
def test_a_big_endian_view_is_refused_at_submit(make_worker):
    w = make_worker(sub_workers=1)
    w.register_sub(lambda args: None)
    w.init()
    a = w.zeros(4, np.int32)
    with pytest.raises(ValueError, match="byte order"):
        tf.TaskArgs().input(a.view(">i4"))
    tf.TaskArgs().input(a.view("<i4")).input(a.view("=i4")).input(w.zeros(4, ">i1"))  # native or 1-byte: fine


@pytest.mark.parametrize("kw", [dict(window=1 << 21), dict(chips=1 << 11), dict(sub_workers=1 << 11),
                                dict(arena_bytes=1 << 50)])
def test_sizes_beyond_the_engine_are_value_errors(kw):
    with pytest.raises(ValueError, match="at most"):
        tf.Worker(level=3, **kw)
