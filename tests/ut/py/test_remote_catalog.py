"""Callables reach a daemon by content: each payload is sent once per daemon
(counted there), the daemon's already-running children learn them at run
time, a compiled kernel travels as its library's bytes, and a function the
daemon cannot load or the client cannot ship fails with a message that says
why."""
import sys
import textwrap

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from tierflow.native import demo_kernels_path
from remote_rig import Daemon, probe

cloudpickle.register_pickle_by_value(sys.modules[__name__])

H = {}
OFFSET = [1]


def add_offset(args, chip):
    args.tensor(0)[...] += OFFSET[0]


def orch(o, args):
    o.submit_next_level(H["k"], tf.TaskArgs().inout(args.tensor(0)))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("catalog"), chips=2, sub_workers=1)
    yield d
    d.stop_ok()
    d.assert_clean()


def pushed(daemon) -> int:
    return probe("ready", daemon.address, daemon.token)["ready"]["catalog"]["pushed"]


def run_once(daemon, kernel) -> np.ndarray:
    l3 = tf.Worker(level=3, chips=1)
    H["k"] = l3.register_kernel(kernel)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    o = w4.register_orch(orch)
    with w4:
        x = w4.zeros(3, np.int64)
        w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
        w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
        return x.copy()


def test_each_payload_crosses_once_per_daemon(daemon):
    before = pushed(daemon)
    np.testing.assert_array_equal(run_once(daemon, add_offset), [2, 2, 2])
    first = pushed(daemon)
    assert first == before + 2  # the kernel and the orch function
    np.testing.assert_array_equal(run_once(daemon, add_offset), [2, 2, 2])
    assert pushed(daemon) == first  # a second client with the same functions sends nothing
    OFFSET[0] = 5  # different captured state is different content: a new key
    try:
        np.testing.assert_array_equal(run_once(daemon, add_offset), [10, 10, 10])
    finally:
        OFFSET[0] = 1
    assert pushed(daemon) == first + 2  # (the orch function captures the kernel's handle by its key)


def test_a_compiled_kernel_travels_as_its_librarys_bytes(daemon):
    np.testing.assert_array_equal(run_once(daemon, tf.NativeKernel(demo_kernels_path(), "tf_add_one_i64")),
                                  [2, 2, 2])


def test_a_compiled_kernels_failure_comes_back_with_its_text(daemon):
    l3 = tf.Worker(level=3, chips=1)
    H["k"] = l3.register_kernel(tf.NativeKernel(demo_kernels_path(), "tf_fail"))
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    o = w4.register_orch(orch)
    with w4:
        x = w4.zeros(3, np.int64)
        with pytest.raises(tf.TaskError, match=r"l3 0 › chip \d.*deliberate failure"):
            w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)


def test_a_function_the_daemon_cannot_import_fails_its_task_saying_so(daemon, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text(textwrap.dedent("""
        def orch(o, args):
            args.tensor(0)[...] = 1
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here  # importable in this process only: pickled by reference
    l3 = tf.Worker(level=3, chips=1)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    o = w4.register_orch(only_here.orch)
    with w4:
        x = w4.zeros(3, np.int64)
        with pytest.raises(tf.TaskError, match="could not load the orch function.*only_here"):
            w4.submit_next_level(o, tf.TaskArgs().inout(x)).wait(60)
        assert (x == 0).all()
    sys.modules.pop("only_here", None)


def test_a_function_that_does_not_pickle_is_refused_at_init(daemon):
    import threading
    lock = threading.Lock()

    def holds_a_lock(o, args):
        with lock:
            pass

    l3 = tf.Worker(level=3, chips=1)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    w4.register_orch(holds_a_lock)
    with pytest.raises(tf.RemoteError, match="cannot ship orch function .*holds_a_lock.*does not pickle"):
        w4.init()
    w4.close()
