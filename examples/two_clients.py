"""Two clients sharing one Worker's pool through sessions.

A "batch" client floods the pool with a long backlog of small tasks while an
"interactive" client submits one task at a time and waits for each. Each has
its own session: its own queue, served in weighted round robin, its own share
of the window, its own drain and failures. The interactive client's tasks are
served between the batch's, not after all of them; and a failure in the batch
session is reported to the batch client only.
"""
import sys
import threading
import time

import numpy as np

import tierflow as tf

w = tf.Worker(level=3, sub_workers=2, window=512)


@w.sub
def work(args):
    """Fills tensor 0 with scalar 0 after `scalar 1` seconds of work."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.scalar(1):
        pass
    args.tensor(0)[...] = args.scalar(0)
    return t0


@w.sub
def flaky(args):
    raise ValueError("item 13 is corrupt")


def batch_client(out, report):
    with w.session("batch") as s:
        for i in range(2000):
            s.submit_sub(work, tf.TaskArgs().output(out[i:i + 1]).scalar(i).scalar(0.0005))
        s.submit_sub(flaky)
        try:
            s.drain()
        except tf.TaskError as e:
            report["batch"] = [f.message for f in e.failures]


def interactive_client(report):
    with w.session("interactive", weight=2) as s:
        x = w.zeros(1, np.float64)
        waits = []
        for i in range(20):
            t0 = time.monotonic()
            started = s.submit_sub(work, tf.TaskArgs().output(x).scalar(i).scalar(0.0005)).result(timeout=60)
            waits.append(started - t0)
        s.drain()  # nothing failed here: the batch's failure is not ours
        report["interactive_wait_ms"] = 1000 * max(waits)


def main() -> int:
    with w:
        out = w.alloc(2000, np.float64)
        report = {}
        batch = threading.Thread(target=batch_client, args=(out, report))
        batch.start()
        time.sleep(0.1)  # let the backlog build
        interactive_client(report)
        batch.join()
        ok = bool(np.all(out == np.arange(2000)))
    print(f"interactive client: longest wait {report['interactive_wait_ms']:.1f} ms behind a backlog of 2000")
    print(f"batch client saw its own failure: {report.get('batch')}")
    print("two_clients:", "OK" if ok and report.get("batch") else "MISMATCH")
    return 0 if ok and report.get("batch") else 1


if __name__ == "__main__":
    sys.exit(main())
