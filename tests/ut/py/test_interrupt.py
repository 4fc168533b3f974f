"""Ctrl-C during drain(): KeyboardInterrupt arrives promptly and close() still
cleans up every child."""
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import process_running

SCRIPT = textwrap.dedent("""
    import os, time
    import tierflow as tf
    w = tf.Worker(level=3, sub_workers=2, chips=1)
    @w.sub
    def slow(args):
        time.sleep(30)
    with w:
        for _ in range(10):
            w.submit_sub(slow)
        print(" ".join(str(p) for p in w.pids().values()), flush=True)
        try:
            w.drain()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
""")



@pytest.mark.timeout(60)
def test_sigint_during_drain_returns_within_two_seconds_and_cleans_up():
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = [int(x) for x in p.stdout.readline().split()]
    time.sleep(0.3)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    elapsed = time.monotonic() - t0
    assert "interrupted" in out
    assert "KeyboardInterrupt" in err
    assert p.returncode != 0
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert [x for x in pids if process_running(x)] == []
