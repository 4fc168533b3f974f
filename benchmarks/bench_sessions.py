"""Sessions on one Worker (see benchmarks/WORKLOADS.md, F1, F2, J1, S1):
fairness of dispatch between clients, weights, and the cost of many
submitting threads. 2 sub-workers (F2 also on 2 chips); tasks record their own start time
(CLOCK_MONOTONIC is one clock for every process of the host)."""
import statistics
import threading
import time

import numpy as np

import tierflow as tf


def _spin(args):
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.scalar(0):
        pass
    return t0


def _noop(args):
    pass


def _spin_chip(args, chip):
    return _spin(args)


class SessionBench:
    def __init__(self):
        self.w = tf.Worker(level=3, sub_workers=2, chips=2, window=16384)
        self.spin = self.w.register_sub(_spin)
        self.spin_chip = self.w.register_kernel(_spin_chip)
        self.noop = self.w.register_sub(_noop)
        self.w.init()
        self._n = 0

    def close(self):
        self.w.close()

    def _session(self, prefix, weight=1):
        self._n += 1
        return self.w.session(f"{prefix} {self._n}", weight=weight)

    def light_waits(self, with_heavy: bool, n=200, dur=0.0002, backlog=2000):
        """F1: p99 of submit -> start of a light session submitting one task
        at a time, beside a heavy session that keeps `backlog` tasks queued
        (or alone); seconds."""
        light = self._session("light")
        stop = threading.Event()
        heavy = self._session("heavy") if with_heavy else None

        def flood():
            # Small batches, then a pause: the driver's own GIL must not be
            # what the light client waits for.
            while not stop.is_set():
                if heavy.stats()["outstanding"] < backlog:
                    for _ in range(20):
                        heavy.submit_sub(self.spin, tf.TaskArgs().scalar(dur))
                    time.sleep(0)
                else:
                    time.sleep(0.001)

        th = threading.Thread(target=flood) if with_heavy else None
        if th:
            th.start()
            while heavy.stats()["outstanding"] < backlog:
                time.sleep(0.005)
        waits = []
        for _ in range(n):
            t0 = time.monotonic()
            start = light.submit_sub(self.spin, tf.TaskArgs().scalar(dur)).result(timeout=120)
            waits.append(start - t0)
        queued = heavy.stats()["outstanding"] if heavy else 0
        stop.set()
        if th:
            th.join()
            heavy.close(cancel=True)
        light.close()
        if with_heavy and queued < backlog // 2:
            raise RuntimeError(f"the heavy backlog ran dry ({queued} queued): the figure would prove nothing")
        return float(np.percentile(waits, 99))

    def weight_ratio(self, seconds=2.0, dur=0.001, on="sub"):
        """F2: tasks started per session of weights 3 and 1, both backlogged
        for `seconds`, on the sub-workers or (on="chip") the chips; returns
        started(3) / started(1)."""
        return self._shares([3, 1], seconds, dur, on)[0] / max(1, self._shares_last[1])

    def _shares(self, weights, seconds, dur, on="sub"):
        sessions = [self._session(f"w{w}", w) for w in weights]
        per = int(seconds / dur * 2) + 100  # more than the pool can run in `seconds`
        if on == "chip":
            tasks = [[s.submit_next_level(self.spin_chip, tf.TaskArgs().scalar(dur)) for _ in range(per)]
                     for s in sessions]
        else:
            tasks = [[s.submit_sub(self.spin, tf.TaskArgs().scalar(dur)) for _ in range(per)] for s in sessions]
        t_first = min(t.result(timeout=120) for ts in tasks for t in ts[:1])
        time.sleep(seconds)
        cut = t_first + seconds
        counts = []
        for ts in tasks:
            n = 0
            for t in ts:
                if t.done() and t.result() < cut:
                    n += 1
            counts.append(n)
        for s in sessions:
            s.close(cancel=True)
        self._shares_last = counts
        return counts

    def jain(self, sessions=4, seconds=1.0, dur=0.001):
        """J1: Jain's fairness index of tasks started per equal-weight session."""
        x = self._shares([1] * sessions, seconds, dur)
        return sum(x) ** 2 / (len(x) * sum(v * v for v in x))

    def w1_split(self, threads: int, n=20000):
        """S1: W1 (n no-op tasks) split over `threads` threads, one session
        each; tasks/s."""
        sessions = [self._session("w1") for _ in range(threads)]
        args = tf.TaskArgs()
        go = threading.Barrier(threads + 1)

        def client(s):
            go.wait()
            for _ in range(n // threads):
                s.submit_sub(self.noop, args)
            s.drain()

        ts = [threading.Thread(target=client, args=(s,)) for s in sessions]
        for t in ts:
            t.start()
        go.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        rate = (n // threads) * threads / (time.perf_counter() - t0)
        for s in sessions:
            s.close()
        return rate


def run(reps: int, quick: bool):
    b = SessionBench()
    try:
        med = lambda xs: {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "reps": xs}  # noqa: E731
        n = 40 if quick else 200
        res = {
            "f1_light_p99_alone_s": med([b.light_waits(False, n=n) for _ in range(reps)]),
            "f1_light_p99_beside_heavy_s": med([b.light_waits(True, n=n, backlog=500 if quick else 2000)
                                                for _ in range(reps)]),
            "f2_weight_3_to_1_ratio": med([b.weight_ratio(seconds=0.5 if quick else 2.0) for _ in range(reps)]),
            "f2c_weight_3_to_1_ratio_chips": med([b.weight_ratio(seconds=0.5 if quick else 2.0, on="chip")
                                                  for _ in range(reps)]),
            "j1_jain_index_4_sessions": med([b.jain(seconds=0.3 if quick else 1.0) for _ in range(reps)]),
            "s1_w1_one_session": med([b.w1_split(1, n=2000 if quick else 20000) for _ in range(reps)]),
            "s1_w1_8_sessions_8_threads": med([b.w1_split(8, n=2000 if quick else 20000) for _ in range(reps)]),
        }
        res["task_s"] = 0.0002
        return res
    finally:
        b.close()
