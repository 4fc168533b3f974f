"""Bad input gets a clear exception that says what was wrong."""
import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(make_worker):
    w = make_worker(chips=2, sub_workers=1)
    w.s = w.register_sub(lambda a: None)
    w.k = w.register_kernel(lambda a, c: None)
    w.init()
    return w


def test_non_arena_array_is_rejected_with_the_hint(w):
    with pytest.raises(ValueError, match=r"w\.alloc\(\).*w\.share\(\)"):
        w.submit_sub(w.s, tf.TaskArgs().input(np.zeros(4)))


def test_array_of_another_workers_arena_is_rejected(w, make_worker):
    other = make_worker(sub_workers=1)
    foreign = other.alloc(8)
    with pytest.raises(ValueError, match="arena"):
        w.submit_sub(w.s, tf.TaskArgs().output(foreign))


def test_not_an_array_is_a_type_error():
    with pytest.raises(TypeError, match="w.alloc"):
        tf.TaskArgs().input("not an array")


def test_read_only_array_cannot_be_written(w):
    a = w.alloc(4)
    a.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        tf.TaskArgs().output(a)


def test_wrong_handle_kind_names_both_kinds(w):
    with pytest.raises(TypeError, match="KernelHandle.*SubHandle|SubHandle.*KernelHandle"):
        w.submit_next_level(w.s)
    with pytest.raises(TypeError, match="SubHandle.*KernelHandle"):
        w.submit_sub(w.k)
    with pytest.raises(TypeError, match="KernelHandle"):
        w.submit_group(w.s, [tf.TaskArgs()])
    with pytest.raises(TypeError):
        w.submit_sub(lambda a: None)


def test_handle_of_another_worker_is_a_value_error(w, make_worker):
    other = make_worker(sub_workers=1, chips=1)
    s2 = other.register_sub(lambda a: None)
    k2 = other.register_kernel(lambda a, c: None)
    with pytest.raises(ValueError, match="another Worker"):
        w.submit_sub(s2)
    with pytest.raises(ValueError, match="another Worker"):
        w.submit_next_level(k2)


@pytest.mark.parametrize("bad", ["x", None, [1], 1 + 2j, b"1"])
def test_non_numeric_scalar_is_a_type_error(bad):
    with pytest.raises(TypeError, match="int or a float"):
        tf.TaskArgs().scalar(bad)


def test_numpy_scalars_are_accepted():
    a = tf.TaskArgs().scalar(np.int32(3)).scalar(np.float32(0.5)).scalar(True).scalar(2**40)
    assert a.num_scalars == 4


def test_group_arg_count_must_match_workers(w):
    with pytest.raises(ValueError, match="one TaskArgs per worker"):
        w.submit_group(w.k, [tf.TaskArgs(), tf.TaskArgs()], workers=[0])
    with pytest.raises(ValueError, match="chip twice"):
        w.submit_group(w.k, [tf.TaskArgs(), tf.TaskArgs()], workers=[1, 1])
    with pytest.raises(ValueError, match="3 members need 3 chips"):
        w.submit_group(w.k, [tf.TaskArgs()] * 3)
    with pytest.raises(ValueError, match="at least one member"):
        w.submit_group(w.k, [])


@pytest.mark.parametrize("index", [2, -1, 99])
def test_chip_index_out_of_range_is_value_and_index_error(w, index):
    with pytest.raises(ValueError, match="out of range") as e:
        w.submit_next_level(w.k, worker=index)
    assert isinstance(e.value, IndexError)
    with pytest.raises(IndexError):
        w.submit_group(w.k, [tf.TaskArgs()], workers=[index])


def test_chip_index_must_be_an_int(w):
    with pytest.raises(TypeError):
        w.submit_next_level(w.k, worker="0")


def test_submit_next_level_without_chips(make_worker):
    w = make_worker(sub_workers=1)
    k = w.register_kernel(lambda a, c: None)
    w.init()
    with pytest.raises(ValueError, match="chips=0"):
        w.submit_next_level(k)


def test_submit_sub_without_sub_workers(make_worker):
    w = make_worker(chips=1)
    s = w.register_sub(lambda a: None)
    w.init()
    with pytest.raises(ValueError, match="sub_workers=0"):
        w.submit_sub(s)


def test_args_must_be_task_args(w):
    with pytest.raises(TypeError, match="TaskArgs"):
        w.submit_sub(w.s, [1, 2])


def test_register_needs_a_callable(make_worker):
    with pytest.raises(TypeError, match="callable"):
        make_worker(sub_workers=1).register_sub(42)


def test_too_many_tensors_for_the_mailbox(w):
    a = w.alloc(1)
    args = tf.TaskArgs()
    for _ in range(500):
        args.input(a)
    with pytest.raises(ValueError, match="mailbox"):
        w.submit_sub(w.s, args)
