"""Tensors given to a remote level 3 travel by value: input and inout bytes
go out, output and inout bytes come back into the caller's arrays before
the task completes, an output's old bytes never go out, and nothing else
returns (a closure's side effects stay on the daemon)."""
import sys

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from remote_rig import Daemon

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the daemon cannot import this test module

SEEN = []  # appended to by an orch function on the daemon: must stay empty here


def add_scalar(args, chip):
    """out = in + scalar 0 (a chip kernel)."""
    args.tensor(1)[...] = args.tensor(0) + args.scalar(0)


def bump(args, chip):
    args.tensor(0)[...] += 1


def sub_double(args):
    args.tensor(1)[...] = 2 * args.tensor(0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("byvalue"), chips=2, sub_workers=1, arena_bytes=1 << 29)
    yield d
    d.stop_ok()
    d.assert_clean()


def level4(daemon, *orchs, **template):
    l3 = tf.Worker(level=3, chips=template.get("chips", 2), sub_workers=template.get("sub_workers", 1))
    handles = {"add": l3.register_kernel(add_scalar), "bump": l3.register_kernel(bump),
               "double": l3.register_sub(sub_double)}
    w4 = tf.Worker(level=4, arena_bytes=1 << 29)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    return w4, handles


def test_inputs_go_out_and_outputs_and_inouts_come_back(daemon):
    def orch(o, args):
        x, y, z = args.tensor(0), args.tensor(1), args.tensor(2)
        o.submit_next_level(H["add"], tf.TaskArgs().input(x).output(y).scalar(args.scalar(0)))
        o.submit_next_level(H["bump"], tf.TaskArgs().inout(z))
        return float(args.scalar(1)) * 2

    w4, H = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        x = w4.share(np.arange(12, dtype=np.float64).reshape(3, 4))
        y = w4.zeros((3, 4), np.float64)
        z = w4.share(np.full(5, 7, np.int32))
        t = w4.submit_next_level(o, tf.TaskArgs().input(x).output(y).inout(z).scalar(10).scalar(1.25))
        assert t.result(timeout=60) == 2.5
        np.testing.assert_array_equal(y, np.arange(12).reshape(3, 4) + 10)
        np.testing.assert_array_equal(z, np.full(5, 8))
        np.testing.assert_array_equal(x, np.arange(12).reshape(3, 4))  # an input is not written back


def test_an_outputs_old_bytes_are_never_sent(daemon):
    def orch(o, args):
        out = args.tensor(0)
        before = out.tobytes()
        out[...] = 3
        return before

    w4, _ = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        sentinel = np.frombuffer(np.random.default_rng().bytes(4096), dtype=np.uint8)
        out = w4.share(sentinel)
        seen = w4.submit_next_level(o, tf.TaskArgs().output(out)).result(timeout=60)
        assert len(seen) == 4096 and seen != sentinel.tobytes()
        assert (out == 3).all()


def test_views_and_strided_slices_travel_as_their_elements(daemon):
    def orch(o, args):
        o.submit_sub(H["double"], tf.TaskArgs().input(args.tensor(0)).output(args.tensor(1)))

    w4, H = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        base = w4.share(np.arange(40, dtype=np.float32).reshape(5, 8))
        dest = w4.zeros((4, 10), np.float32)
        w4.submit_next_level(o, tf.TaskArgs().input(base[:, ::2]).output(dest[:, 1::2].T)).wait(60)
        expect = np.zeros((4, 10), np.float32)
        expect[:, 1::2] = (2 * np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::2]).T
        np.testing.assert_array_equal(dest, expect)


@pytest.fixture(scope="module")
def grpc_only_daemon(tmp_path_factory):
    """No bulk channel: large tensors stream as gRPC Chunk messages."""
    d = Daemon(tmp_path_factory.mktemp("byvalue-grpc"), chips=2, sub_workers=1, arena_bytes=1 << 29,
               extra=["--data-port", "-1"])
    assert d.ready["data_port"] == 0
    yield d
    d.stop_ok()
    d.assert_clean()


@pytest.mark.parametrize("path", ["bulk-channel", "grpc-streams"])
@pytest.mark.parametrize("shape", [(64 << 20,), (8, 8 << 20)], ids=["one-64MiB", "8x8MiB"])
def test_large_tensors_travel_intact(daemon, grpc_only_daemon, path, shape):
    daemon = daemon if path == "bulk-channel" else grpc_only_daemon
    def orch(o, args):
        for i in range(args.num_tensors // 2):
            o.submit_next_level(H["bump"], tf.TaskArgs().inout(args.tensor(2 * i)))
            o.submit_next_level(H["add"], tf.TaskArgs().input(args.tensor(2 * i)).output(args.tensor(2 * i + 1))
                                .scalar(0))

    w4, H = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        rng = np.random.default_rng(7)
        args = tf.TaskArgs()
        sent, outs = [], []
        for row in range(shape[0] if len(shape) == 2 else 1):
            n = shape[-1]
            a = w4.share(rng.integers(0, 255, n, dtype=np.uint8))
            b = w4.alloc(n, np.uint8)
            sent.append(a.copy())
            outs.append((a, b))
            args.inout(a).output(b)
        w4.submit_next_level(o, args).wait(120)
        for s, (a, b) in zip(sent, outs):
            np.testing.assert_array_equal(a, s + 1)   # inout came back
            np.testing.assert_array_equal(b, s + 1)   # output came back


def test_a_closures_side_effects_stay_on_the_daemon(daemon):
    def orch(o, args):
        SEEN.append("ran")  # happens in the daemon's process, on its copy
        args.tensor(0)[...] = len(SEEN)
        return len(SEEN)

    w4, _ = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        out = w4.zeros(1, np.int64)
        n = w4.submit_next_level(o, tf.TaskArgs().output(out)).result(timeout=60)
        assert n >= 1 and out[0] == n  # only the tensor came back ...
    assert SEEN == []                   # ... the list here never changed


def test_tasks_of_one_remote_follow_their_dependencies(daemon):
    def orch(o, args):
        o.submit_next_level(H["bump"], tf.TaskArgs().inout(args.tensor(0)))

    w4, H = level4(daemon)
    o = w4.register_orch(orch)
    with w4:
        acc = w4.zeros(3, np.int64)
        for _ in range(25):
            w4.submit_next_level(o, tf.TaskArgs().inout(acc))
        w4.drain(timeout=120)
        np.testing.assert_array_equal(acc, [25, 25, 25])


def test_one_group_task_over_a_local_and_a_remote_level_3(daemon):
    def orch(o, args):
        o.submit_next_level(H["add"], tf.TaskArgs().input(args.tensor(0)).output(args.tensor(1)).scalar(100))

    local = tf.Worker(level=3, chips=2, sub_workers=1)
    remote = tf.Worker(level=3, chips=2, sub_workers=1)
    H = {"add": local.register_kernel(add_scalar)}
    remote.register_kernel(add_scalar)
    w4 = tf.Worker(level=4)
    lid = w4.add_worker(local)
    rid = w4.add_remote(daemon.address, remote, token=daemon.token)
    o = w4.register_orch(orch)
    with w4:
        x = w4.share(np.arange(8, dtype=np.int64))
        y = w4.zeros(8, np.int64)
        g = w4.submit_group(o, [tf.TaskArgs().input(x[:4]).output(y[:4]), tf.TaskArgs().input(x[4:]).output(y[4:])],
                            workers=[lid, rid])
        g.wait(60)
        np.testing.assert_array_equal(y, np.arange(8) + 100)
