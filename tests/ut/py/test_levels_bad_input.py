"""Misuse of levels is refused at the call, with what to do instead."""
import numpy as np
import pytest

import tierflow as tf


def noop_kernel(args, chip):
    pass


def test_add_worker_refuses_wrong_levels_and_kinds(make_worker):
    w4 = make_worker(level=4)
    with pytest.raises(ValueError, match="adds level-3 Workers; .* is level 4"):
        w4.add_worker(tf.Worker(level=4))
    with pytest.raises(TypeError, match="takes a tf.Worker"):
        w4.add_worker("l3")
    with pytest.raises(ValueError, match="cannot be added to itself"):
        w4.add_worker(w4)
    w3 = make_worker(level=3, chips=1)
    with pytest.raises(tf.WorkerStateError, match="needs a Worker of level >= 4"):
        w3.add_worker(tf.Worker(level=3))
    with pytest.raises(ValueError, match="adds level-4 Workers"):
        make_worker(level=5).add_worker(tf.Worker(level=3))


def test_add_worker_refuses_initialised_shared_and_allocating_templates(make_worker):
    w4 = make_worker(level=4)
    running = make_worker(level=3, chips=1).init()
    with pytest.raises(tf.WorkerStateError, match="add it before its init"):
        w4.add_worker(running)
    l3 = tf.Worker(level=3, chips=1)
    assert w4.add_worker(l3) == 0
    with pytest.raises(ValueError, match="already added to"):
        make_worker(level=4).add_worker(l3)
    with pytest.raises(ValueError, match="already added to"):
        make_worker(level=4).add_remote("127.0.0.1:1", l3, token="t")
    allocated = tf.Worker(level=3, chips=1)
    allocated.zeros(4)
    with pytest.raises(tf.WorkerStateError, match="has allocated tensors"):
        w4.add_worker(allocated)
    allocated.close()


def test_add_worker_after_init_is_refused(make_worker):
    w4 = make_worker(level=4)
    w4.add_worker(tf.Worker(level=3, chips=1))
    w4.init()
    with pytest.raises(tf.WorkerStateError, match="before init"):
        w4.add_worker(tf.Worker(level=3, chips=1))


def test_a_template_cannot_be_used_directly(make_worker):
    w4 = make_worker(level=4)
    l3 = tf.Worker(level=3, chips=1)
    k = l3.register_kernel(noop_kernel)  # registering is what a template is for
    w4.add_worker(l3)
    l3.register_kernel(noop_kernel)  # still before the parent's init
    for call in (l3.init, lambda: l3.alloc(4), lambda: l3.submit_next_level(k), l3.drain):
        with pytest.raises(tf.WorkerStateError, match="is a template added to"):
            call()
    w4.init()
    with pytest.raises(tf.WorkerStateError, match="before .*init"):
        l3.register_kernel(noop_kernel)


def test_level_4_has_no_chips_and_takes_orch_handles(make_worker):
    with pytest.raises(ValueError, match="no chips of its own"):
        tf.Worker(level=4, chips=2)
    w4 = make_worker(level=4)
    l3 = tf.Worker(level=3, chips=2)
    k = l3.register_kernel(noop_kernel)
    own_k = w4.register_kernel(noop_kernel)
    w4.add_worker(l3)
    o = w4.register_orch(lambda orch, args: None)
    w4.init()
    for handle in (k, own_k):
        with pytest.raises(TypeError, match="needs a tf.OrchHandle, got a tf.KernelHandle"):
            w4.submit_next_level(handle)
        with pytest.raises(TypeError, match="needs a tf.OrchHandle"):
            w4.submit_group(handle, [tf.TaskArgs()])
    with pytest.raises(ValueError, match="2 members need 2 level-3 Workers, but this Worker has 1"):
        w4.submit_group(o, [tf.TaskArgs(), tf.TaskArgs()])
    with pytest.raises(tf.InvalidWorkerIndex, match="level-3 Worker index 1 is out of range"):
        w4.submit_next_level(o, worker=1)
    other = make_worker(level=4)
    foreign = other.register_orch(lambda orch, args: None)
    with pytest.raises(ValueError, match="belongs to another Worker"):
        w4.submit_next_level(foreign)


def test_level_4_without_added_workers_says_how_to_add_them(make_worker):
    w4 = make_worker(level=4, sub_workers=1)
    o = w4.register_orch(lambda orch, args: None)
    w4.init()
    with pytest.raises(ValueError, match=r"needs level-3 Workers, but none was added; add one with w.add_worker"):
        w4.submit_next_level(o)


def test_add_remote_takes_its_template_as_l3(make_worker):
    # The contract's spelling: add_remote(address, l3, *, token=None, tls=None).
    w4 = make_worker(level=4)
    assert w4.add_remote("127.0.0.1:1", l3=tf.Worker(level=3, chips=1), token="t") == 0
    with pytest.raises(TypeError):
        w4.add_remote("127.0.0.1:1", tf.Worker(level=3, chips=1), "t")  # token is keyword-only
