"""Data parallel across a local and a remote level-3 Worker.

The same job as data_parallel.py — Y = X @ W, the batch split by rows over
two level-3 Workers, W split by columns over each one's two chips, a group
allreduce of the squared norms — but the second level-3 Worker is a
`tierflow daemon`, reached over gRPC. The example starts that daemon itself
on loopback (port 0: any free port, read back from its ready file); on a
cluster you would start it on another host (docs/remote.md).

The local level-3 Worker sees the level-4 tensors zero-copy; the remote one
gets them by value: its rows of X and all of W go out, its rows of Y and its
partials come back into the level-4 arrays before its task completes. The
orch function is the same for both.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import tierflow as tf

ROWS, K, M = 128, 64, 96   # per level-3 Worker: X[i] is ROWS x K, W is K x M


def matmul_block(args, chip):
    x, w, y = args.tensor(0), args.tensor(1), args.tensor(2)
    np.matmul(x, w, out=y)


def allreduce_sumsq(args, chip):
    block, partials, total = args.tensor(0), args.tensor(1), args.tensor(2)
    partials[chip.group_rank] = float(np.square(block, dtype=np.float64).sum())
    chip.barrier()
    if chip.group_rank == 0:
        total[0] = partials.sum()
    chip.barrier()


def start_daemon(workdir: str) -> subprocess.Popen:
    ready = os.path.join(workdir, "ready.json")
    proc = subprocess.Popen([sys.executable, "-m", "tierflow", "daemon", "--listen", "127.0.0.1:0", "--chips", "2",
                             "--token-file", os.path.join(workdir, "token"), "--ready-file", ready,
                             "--log-level", "WARNING"])
    deadline = time.monotonic() + 60
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the tierflow daemon did not start")
        time.sleep(0.05)
    return proc


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="tierflow-example-")
    daemon = start_daemon(workdir)
    try:
        with open(os.path.join(workdir, "ready.json")) as f:
            address = json.load(f)["address"]
        with open(os.path.join(workdir, "token")) as f:
            token = f.read().strip()

        local, remote = tf.Worker(level=3, chips=2), tf.Worker(level=3, chips=2)
        k_matmul, k_allreduce = local.register_kernel(matmul_block), local.register_kernel(allreduce_sumsq)
        remote.register_kernel(matmul_block)     # the same kernels, in the same order:
        remote.register_kernel(allreduce_sumsq)  # one orch function serves both

        w4 = tf.Worker(level=4, sub_workers=1)
        w4.add_worker(local)                                   # l3 0: a child process on this host
        w4.add_remote(address, remote, token=token)            # l3 1: the daemon

        @w4.orch
        def forward(orch, args):
            x, w, y, partials, total = (args.tensor(i) for i in range(5))
            half = w.shape[1] // 2
            cols = [slice(0, half), slice(half, w.shape[1])]
            for j, c in enumerate(cols):
                orch.submit_next_level(k_matmul, tf.TaskArgs().input(x).input(w[:, c]).output(y[:, c]), worker=j)
            orch.submit_group(k_allreduce, [tf.TaskArgs().input(y[:, c]).inout(partials).inout(total)
                                            for c in cols])

        rng = np.random.default_rng(0)
        with w4:
            x = w4.share(rng.standard_normal((2 * ROWS, K), dtype=np.float32))
            w = w4.share(rng.standard_normal((K, M), dtype=np.float32))
            y = w4.alloc((2 * ROWS, M), np.float32)
            partials = w4.zeros((2, 2), np.float64)
            total = w4.zeros(2, np.float64)
            for i in range(2):
                rows = slice(i * ROWS, (i + 1) * ROWS)
                w4.submit_next_level(forward, tf.TaskArgs().input(x[rows]).input(w).output(y[rows])
                                     .inout(partials[i]).inout(total[i:i + 1]), worker=i)
            w4.drain()
            expected = x.astype(np.float64) @ w.astype(np.float64)
            ok = np.allclose(y, expected, rtol=1e-4, atol=1e-3) and all(
                np.isclose(total[i], np.square(expected[i * ROWS:(i + 1) * ROWS]).sum(), rtol=1e-4)
                for i in range(2))
            remote_stats = w4.stats()["l3 1"]
        ran = remote_stats["session"]["completed"]
        print("remote_data_parallel:", "OK" if ok else "MISMATCH",
              f"(the daemon at {address} ran {ran} chip tasks for this client)")
        return 0 if ok else 1
    finally:
        daemon.terminate()
        daemon.wait(60)


if __name__ == "__main__":
    sys.exit(main())
