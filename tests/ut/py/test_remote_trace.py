"""A traced level-4 Worker's file includes what its remote daemons ran for
it — their chips as a process track of their own, on this host's clock —
and nothing the daemon ran for other clients."""
import json
import sys

import cloudpickle
import numpy as np

import tierflow as tf
from remote_rig import Daemon
from test_trace_file import check_perfetto_rules

cloudpickle.register_pickle_by_value(sys.modules[__name__])

H = {}


def kinc(args, chip):
    args.tensor(0)[...] += 1


def orch(o, args):
    for _ in range(args.scalar(0)):
        o.submit_next_level(H["k"], tf.TaskArgs().inout(args.tensor(0)))


def run_client(daemon, path, tasks: int):
    l3 = tf.Worker(level=3, chips=2)
    H["k"] = l3.register_kernel(kinc)
    w4 = tf.Worker(level=4, trace=str(path))
    w4.add_remote(daemon.address, l3, token=daemon.token)
    o = w4.register_orch(orch)
    with w4:
        x = w4.zeros(4, np.int64)
        w4.submit_next_level(o, tf.TaskArgs().inout(x).scalar(tasks)).wait(60)
    with open(path) as f:
        return json.load(f)


def test_the_daemons_runs_for_this_client_are_in_its_trace(tmp_path):
    d = Daemon(tmp_path, chips=2, sub_workers=0)
    try:
        run_client(d, tmp_path / "other.json", 5)  # another client first
        trace = run_client(d, tmp_path / "mine.json", 3)
        slices, flows = check_perfetto_rules(trace)
        procs = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
        assert procs[2] == f"l3 0: {d.address} (daemon, level 3)"
        remote = [e for (pid, _t), ss in slices.items() if pid == 2 for e in ss]
        assert len(remote) == 3 and {e["name"] for e in remote} == {"kinc"}  # its own three, not the other's five
        assert len([f for f in flows if f[0]["pid"] == 2]) == 2  # the chain of three on the daemon
        top = [e for (pid, _t), ss in slices.items() if pid == 1 for e in ss]
        assert len(top) == 1
        # On this host's clock: the daemon's runs lie inside the level-4 task's slice.
        t0, t1 = top[0]["ts"], top[0]["ts"] + top[0]["dur"]
        assert all(t0 - 1000 <= e["ts"] and e["ts"] + e["dur"] <= t1 + 1000 for e in remote)
    finally:
        d.stop_ok()
