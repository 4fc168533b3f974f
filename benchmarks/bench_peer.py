"""W1-W4 on concurrent.futures.ProcessPoolExecutor(2), driven as
WORKLOADS.md says: the driver waits for results before submitting
dependents (W2, W3) or submits them from completion callbacks (W4)."""
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

MiB = 1 << 20


def noop():
    return None


def add1(x):
    return x + 1


def fill(i, n):
    return np.full(n, i, np.float32)


def total(parts):
    out = parts[0].copy()
    for p in parts[1:]:
        out += p
    return out


def ident(i):
    return i


def axpb(a, m, b):
    return a * m + b


def add2(b, c):
    return b + c


class PeerBench:
    def __init__(self):
        self.pool = ProcessPoolExecutor(2)
        self.pool.submit(noop).result()

    def close(self):
        self.pool.shutdown()

    def w1(self, n=20000):
        t0 = time.perf_counter()
        futs = [self.pool.submit(noop) for _ in range(n)]
        for f in futs:
            f.result()
        return n / (time.perf_counter() - t0)

    def w2(self, n=2000):
        x = np.zeros(8, np.int64)
        t0 = time.perf_counter()
        for _ in range(n):
            x = self.pool.submit(add1, x).result()
        dt = time.perf_counter() - t0
        assert np.all(x == n)
        return dt / n * 1e6

    def w3(self, k=64, nbytes=8 * MiB):
        n = nbytes // 4
        t0 = time.perf_counter()
        parts = [f.result() for f in [self.pool.submit(fill, i, n) for i in range(k)]]
        out = self.pool.submit(total, parts).result()
        dt = time.perf_counter() - t0
        assert np.all(out == k * (k - 1) / 2)
        return dt

    def w4(self, n=5000):
        results = [None] * n
        done = threading.Event()
        remaining = [n]
        lock = threading.Lock()
        pool = self.pool

        def diamond(i):
            def on_a(fa):
                a = fa.result()
                fb, fc = pool.submit(axpb, a, 1, 1), pool.submit(axpb, a, 2, 0)
                pending = [2]

                def on_bc(_):
                    with lock:
                        pending[0] -= 1
                        last = pending[0] == 0
                    if last:
                        pool.submit(add2, fb.result(), fc.result()).add_done_callback(on_d)
                fb.add_done_callback(on_bc)
                fc.add_done_callback(on_bc)

            def on_d(fd):
                results[i] = fd.result()
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
            pool.submit(ident, i).add_done_callback(on_a)

        t0 = time.perf_counter()
        for i in range(n):
            diamond(i)
        done.wait()
        dt = time.perf_counter() - t0
        assert sum(results) == 3 * n * (n - 1) // 2 + n  # 37,497,500 for n = 5000
        return 4 * n / dt
