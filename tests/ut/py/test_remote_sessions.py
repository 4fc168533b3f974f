"""Each client of a daemon is its own session: two clients at once share its
chips fairly, and each sees only its own failures."""
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from remote_rig import Daemon

cloudpickle.register_pickle_by_value(sys.modules[__name__])

H = {}
TASKS = 150


def stamp(args, chip):
    time.sleep(0.002)
    args.tensor(0)[...] = time.monotonic()


def boom(args, chip):
    raise RuntimeError("only this client's")


def orch_stamps(o, args):
    out = args.tensor(0)
    for i in range(out.shape[0]):
        o.submit_next_level(H["stamp"], tf.TaskArgs().output(out[i:i + 1]))


def orch_boom(o, args):
    o.submit_next_level(H["boom"], tf.TaskArgs())


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("sessions"), chips=1, sub_workers=0)
    yield d
    d.stop_ok()
    d.assert_clean()


def client(daemon):
    l3 = tf.Worker(level=3, chips=1)
    H["stamp"] = l3.register_kernel(stamp)
    H["boom"] = l3.register_kernel(boom)
    w4 = tf.Worker(level=4)
    w4.add_remote(daemon.address, l3, token=daemon.token)
    return w4, w4.register_orch(orch_stamps), w4.register_orch(orch_boom)


def test_two_clients_at_once_share_the_daemons_chip_fairly(daemon):
    (a, sa, _), (b, sb, _) = client(daemon), client(daemon)
    with a, b:
        outs = {"a": a.zeros(TASKS, np.float64), "b": b.zeros(TASKS, np.float64)}
        errors = []

        def drive(w, o, key):
            try:
                w.submit_next_level(o, tf.TaskArgs().inout(outs[key])).wait(120)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=drive, args=(a, sa, "a")), threading.Thread(target=drive, args=(b, sb, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        assert not errors
        ta, tb = np.sort(outs["a"]), np.sort(outs["b"])
        assert (ta > 0).all() and (tb > 0).all()
        lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
        in_a = int(((ta >= lo) & (ta <= hi)).sum())
        in_b = int(((tb >= lo) & (tb <= hi)).sum())
        assert in_a > TASKS // 3 and in_b > TASKS // 3, (in_a, in_b)  # they really overlapped
        assert 0.6 <= in_a / in_b <= 1.67, f"shares while both ran: {in_a} vs {in_b}"


def test_a_clients_failure_reaches_only_that_client(daemon):
    (a, sa, boom_a), (b, sb, _) = client(daemon), client(daemon)
    with a, b:
        with pytest.raises(tf.TaskError, match="only this client's"):
            a.submit_next_level(boom_a, None).wait(60)
        out = b.zeros(5, np.float64)
        b.submit_next_level(sb, tf.TaskArgs().inout(out)).wait(60)
        b.drain(timeout=60)  # nothing of a's failure here
        assert (out > 0).all()
