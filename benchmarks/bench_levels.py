"""Levels (see benchmarks/WORKLOADS.md, L1 and L2): a level-4 Worker over
two level-3 Workers of 2 chips each.

L1, the level-4 hop: a chain of orch tasks on one int64[8] (inout), each
running one chip task (add one) on its level-3 Worker, in microseconds per
link — against the level-3 W2 hop of the same kernel on the same kind of
chips, measured in the same run; once with the native C kernel, once with
a Python kernel.

L2, level-4 fan-out: 2,000 independent orch tasks over the two level-3
Workers, each running one chip task on its own element, in tasks/s —
against ProcessPoolExecutor(2) running the same work (one function call
per task that increments its element and returns it).
"""
import concurrent.futures as cf
import time

import numpy as np

import tierflow as tf
from tierflow.native import demo_kernels_path


def _add_one_py(x):
    return x + 1


def _add_one_kernel(args, chip):
    args.tensor(0)[...] += 1


class LevelBench:
    """`kernel`: "native" (the C add-one kernel) or "python" (the same in a
    Python kernel), on both the level-4 Worker's chips and the level-3
    reference."""

    def __init__(self, kernel="native"):
        lib = demo_kernels_path()
        make = (lambda: tf.NativeKernel(lib, "tf_add_one_i64")) if kernel == "native" else (lambda: _add_one_kernel)
        self.w4 = tf.Worker(level=4, window=4096)
        self.k = None
        for _ in range(2):
            l3 = tf.Worker(level=3, chips=2, window=256)
            k = l3.register_kernel(make())
            self.k = self.k or k
            self.w4.add_worker(l3)
        k = self.k

        def one_chip_task(orch, args):
            orch.submit_next_level(k, args)

        self.o = self.w4.register_orch(one_chip_task)
        self.w4.init()
        # The level-3 reference: the same kernel on 2 chips, at level 3.
        self.w3 = tf.Worker(level=3, chips=2, window=4096)
        self.k3 = self.w3.register_kernel(make())
        self.w3.init()

    def close(self):
        self.w4.close()
        self.w3.close()

    def l1_hop_us(self, n=500):
        x = self.w4.zeros(8, np.int64)
        args = tf.TaskArgs().inout(x)
        t0 = time.perf_counter()
        for _ in range(n):
            self.w4.submit_next_level(self.o, args)
        self.w4.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == n), x
        return dt / n * 1e6

    def l3_w2_hop_us(self, n=2000):
        x = self.w3.zeros(8, np.int64)
        args = tf.TaskArgs().inout(x)
        t0 = time.perf_counter()
        for _ in range(n):
            self.w3.submit_next_level(self.k3, args)
        self.w3.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == n)
        return dt / n * 1e6

    def l2_fanout_tasks_per_s(self, n=2000):
        x = self.w4.zeros(n, np.int64)
        t0 = time.perf_counter()
        for i in range(n):
            self.w4.submit_next_level(self.o, tf.TaskArgs().inout(x[i:i + 1]))
        self.w4.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == 1)
        per = self.w4.stats()["tasks_per_worker"]
        assert per["l3 0"] > 0 and per["l3 1"] > 0, per
        return n / dt


class PeerFanout:
    def __init__(self):
        self.ex = cf.ProcessPoolExecutor(2)
        list(self.ex.map(_add_one_py, range(4)))  # start the processes

    def close(self):
        self.ex.shutdown()

    def l2_fanout_tasks_per_s(self, n=2000):
        x = np.zeros(n, np.int64)
        t0 = time.perf_counter()
        futs = [self.ex.submit(_add_one_py, int(x[i])) for i in range(n)]
        for i, f in enumerate(futs):
            x[i] = f.result()
        dt = time.perf_counter() - t0
        assert np.all(x == 1)
        return n / dt


def run(measure, reps, quick):
    out = {}
    n_hop, n_w2, n_fan = (50, 200, 200) if quick else (500, 2000, 2000)
    for kernel in ("native", "python"):
        b = LevelBench(kernel)
        try:
            out[f"l1_l4_hop_{kernel}_us"] = measure(lambda: b.l1_hop_us(n_hop), reps)
            out[f"l1_l3_w2_chip_hop_{kernel}_us"] = measure(lambda: b.l3_w2_hop_us(n_w2), reps)
            if kernel == "native":
                out["l2_l4_fanout_tasks_per_s"] = measure(lambda: b.l2_fanout_tasks_per_s(n_fan), reps)
        finally:
            b.close()
    p = PeerFanout()
    try:
        out["l2_processpool_tasks_per_s"] = measure(lambda: p.l2_fanout_tasks_per_s(n_fan), reps)
    finally:
        p.close()
    return out
