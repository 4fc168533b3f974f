"""Starting daemons the way launchers do: the console script and
`python -m tierflow daemon`, ready files written atomically once serving
(and withdrawn at exit), and remotes_from_ready_files() turning a
directory of them into add_remote() calls."""
import json
import os
import subprocess
import sys
import sysconfig
import threading

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from tierflow.remote import remotes_from_ready_files
from remote_rig import Daemon

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def where(args, chip):
    args.tensor(0)[...] = os.getpid()


H = {}


def orch(o, args):
    o.submit_next_level(H["k"], tf.TaskArgs().output(args.tensor(0)))


def test_the_console_script_and_the_module_both_start_a_daemon():
    script = os.path.join(sysconfig.get_path("scripts"), "tierflow")
    if not os.path.exists(script):
        pytest.skip(f"the tierflow console script is not installed in {os.path.dirname(script)}")
    for argv in ([script, "daemon", "--help"], [sys.executable, "-m", "tierflow", "daemon", "--help"]):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "--listen" in r.stdout and "--token-file" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tierflow", "nonsense"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown command 'nonsense'" in r.stderr


def test_a_directory_of_ready_files_becomes_the_remotes_of_a_level_4_worker(tmp_path):
    shared = tmp_path / "ready"
    shared.mkdir()
    daemons = []
    try:
        for i in range(2):
            d = Daemon(tmp_path, chips=1, sub_workers=0, name=f"node{i}", token="one-token-for-the-cluster",
                       start=False)
            d.ready_file = str(shared / f"node{i}.json")  # the launcher points every --ready-file there
            d.argv[d.argv.index("--ready-file") + 1] = d.ready_file
            daemons.append(d.start())
        (shared / "partial.json").write_text("{")  # a half-written file is skipped, not an error
        found = remotes_from_ready_files(str(shared), expect=2, timeout=5)
        assert [r["address"] for r in found] == [d.address for d in daemons]
        assert all(r["chips"] == 1 and r["ready"]["state"] == "serving" for r in found)

        l3s = [tf.Worker(level=3, chips=1) for _ in found]
        H["k"] = l3s[0].register_kernel(where)
        l3s[1].register_kernel(where)
        w4 = tf.Worker(level=4)
        for r, l3 in zip(found, l3s):
            w4.add_remote(r["address"], l3, token="one-token-for-the-cluster")
        o = w4.register_orch(orch)
        with w4:
            pids = [w4.zeros(1, np.int64) for _ in found]
            for i, p in enumerate(pids):
                w4.submit_next_level(o, tf.TaskArgs().output(p), worker=i)
            w4.drain(timeout=60)
            chip_pids = [set(d.descendants()) for d in daemons]
            assert all(int(p[0]) in kids for p, kids in zip(pids, chip_pids))  # each ran on its own daemon
    finally:
        for d in daemons:
            d.stop()
    assert not os.path.exists(shared / "node0.json")  # a stopped daemon withdraws its ready file


def test_waiting_for_more_daemons_than_are_ready_times_out_naming_the_count(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"state": "serving", "address": "10.0.0.1:7070"}))
    with pytest.raises(TimeoutError, match="1 of 3 tierflow daemons"):
        remotes_from_ready_files(str(tmp_path), expect=3, timeout=0.3)
