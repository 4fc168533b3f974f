"""If the parent is killed, every child (and the fork server) goes with it."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import process_running

PARENT = textwrap.dedent("""
    import sys, time
    import tierflow as tf
    w = tf.Worker(level=3, chips=2, sub_workers=2)
    @w.sub
    def spin(args):
        while True:
            pass
    w.init()
    w.submit_sub(spin)
    print(" ".join(str(p) for p in w.pids().values()), flush=True)
    time.sleep(60)
""")



@pytest.mark.timeout(60)
def test_children_exit_within_a_second_of_parent_sigkill():
    p = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(x) for x in p.stdout.readline().split()]
        assert len(pids) == 4 and all(process_running(x) for x in pids)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(process_running(x) for x in pids):
            time.sleep(0.02)
        assert [x for x in pids if process_running(x)] == []
    finally:
        if p.poll() is None:
            p.kill()
