"""W1-W4 and W4c (see benchmarks/WORKLOADS.md) on tierflow: 2 Python
sub-workers, or 2 chips running the native demo kernels."""
import time

import numpy as np

import tierflow as tf
from tierflow.native import demo_kernels_path

MiB = 1 << 20


def _noop(args):
    pass


def _add1(args):
    args.tensor(0)[...] += 1


def _fill(args):
    args.tensor(0)[...] = args.scalar(0)


def _sum(args):
    n = args.num_tensors
    out = args.tensor(n - 1)
    np.copyto(out, args.tensor(0))
    for i in range(1, n - 1):
        out += args.tensor(i)


def _set(args):
    args.tensor(0)[0] = args.scalar(0)


def _axpb(args):
    args.tensor(1)[0] = args.tensor(0)[0] * args.scalar(0) + args.scalar(1)


def _add2(args):
    args.tensor(2)[0] = args.tensor(0)[0] + args.tensor(1)[0]


class TierflowBench:
    """One Worker for all repetitions; `kind` is "sub" or "chip"."""

    def __init__(self, kind: str):
        self.kind = kind
        self.w = tf.Worker(level=3, window=4096, arena_bytes=1600 * MiB,
                           **({"sub_workers": 2} if kind == "sub" else {"chips": 2}))
        if kind == "sub":
            reg = self.w.register_sub
            self.h = {n: reg(f) for n, f in dict(noop=_noop, add1=_add1, fill=_fill, sum=_sum, set=_set,
                                                  axpb=_axpb, add2=_add2).items()}
            self.submit = self.w.submit_sub
        else:
            lib = demo_kernels_path()
            sym = dict(noop="tf_noop", add1="tf_add_one_i64", fill="tf_fill_f32", sum="tf_sum_f32",
                       set="tf_set_i64", axpb="tf_axpb_i64", add2="tf_add2_i64")
            self.h = {n: self.w.register_kernel(tf.NativeKernel(lib, s)) for n, s in sym.items()}
            self.submit = self.w.submit_next_level
        self.w.init()

    def close(self):
        self.w.close()

    def w1(self, n=20000):
        noop, submit, empty = self.h["noop"], self.submit, tf.TaskArgs()
        t0 = time.perf_counter()
        for _ in range(n):
            submit(noop, empty)
        self.w.drain()
        dt = time.perf_counter() - t0
        assert self.w.stats()["failed"] == 0
        return n / dt

    def w2(self, n=2000):
        x = self.w.alloc(8, np.int64)
        x[:] = 0
        args = tf.TaskArgs().inout(x)
        t0 = time.perf_counter()
        for _ in range(n):
            self.submit(self.h["add1"], args)
        self.w.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == n)
        return dt / n * 1e6

    def w3(self, k=64, nbytes=8 * MiB):
        n = nbytes // 4
        parts = [self.w.alloc(n, np.float32) for _ in range(k)]
        out = self.w.alloc(n, np.float32)
        t0 = time.perf_counter()
        for i, p in enumerate(parts):
            self.submit(self.h["fill"], tf.TaskArgs().output(p).scalar(float(i)))
        red = tf.TaskArgs()
        for p in parts:
            red.input(p)
        self.submit(self.h["sum"], red.output(out))
        self.w.drain()
        dt = time.perf_counter() - t0
        assert np.all(out == k * (k - 1) / 2)
        return dt

    def _diamonds(self, n, views):
        """Submits n diamonds A = i; B = A + 1; C = 2A; D = B + C on the four
        tensors views(i) returns, drains, and returns tasks/s."""
        h, submit = self.h, self.submit
        t0 = time.perf_counter()
        for i in range(n):
            a, b, c, d = views(i)
            submit(h["set"], tf.TaskArgs().output(a).scalar(i))
            submit(h["axpb"], tf.TaskArgs().input(a).output(b).scalar(1).scalar(1))
            submit(h["axpb"], tf.TaskArgs().input(a).output(c).scalar(2).scalar(0))
            submit(h["add2"], tf.TaskArgs().input(b).input(c).output(d))
        self.w.drain()
        return 4 * n / (time.perf_counter() - t0)

    def w4(self, n=5000):
        """Each diamond on its own one-element tensors (rows of one array)."""
        bufs = self.w.alloc((n, 4), np.int64)
        rate = self._diamonds(n, lambda i: (bufs[i, 0:1], bufs[i, 1:2], bufs[i, 2:3], bufs[i, 3:4]))
        assert int(bufs[:, 3].sum()) == 3 * n * (n - 1) // 2 + n  # 37,497,500 for n = 5000
        return rate

    def w4c(self, n=5000):
        """W4 where diamond i's four tensors are the columns 4i..4i+3 of ONE
        int64[2, 4n] matrix: strided views whose spans all overlap and whose
        bytes never do, so every diamond is independent as in W4."""
        m = self.w.alloc((2, 4 * n), np.int64)
        rate = self._diamonds(n, lambda i: (m[:, 4 * i], m[:, 4 * i + 1], m[:, 4 * i + 2], m[:, 4 * i + 3]))
        assert int(m[0, 3::4].sum()) == 3 * n * (n - 1) // 2 + n
        return rate
