"""Disjoint slices of one buffer vs separate buffers.

Streams the same number of tasks through the same Worker twice: once where
task i writes slice i of ONE big allocation (thousands of live slices in one
TensorMap index), once where task i writes its OWN allocation. Disjoint
slices never conflict, so both streams have no dependencies; the ratio shows
what the byte-range index costs. Target: slices >= 0.5x the separate-buffer
rate. Both are measured in the same run, alternating, median of repetitions.

    python benchmarks/disjoint_slices.py [--tasks 20000] [--reps 5]
"""
import argparse
import json
import statistics
import time

import numpy as np

import tierflow as tf


def stream(w, fn, views):
    t0 = time.perf_counter()
    for v in views:
        w.submit_sub(fn, tf.TaskArgs().output(v))
    w.drain()
    return len(views) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--window", type=int, default=4096)
    opts = ap.parse_args()

    w = tf.Worker(level=3, sub_workers=2, window=opts.window, arena_bytes=256 << 20)

    @w.sub
    def touch(args):
        args.tensor(0)[0] = 1.0

    with w:
        n = opts.tasks
        big = w.alloc((n, 16), np.float32)
        slices = [big[i] for i in range(n)]
        separate = [w.alloc(16, np.float32) for _ in range(n)]
        stream(w, touch, slices[:1000])  # warm up
        one, many = [], []
        for _ in range(opts.reps):
            one.append(stream(w, touch, slices))
            many.append(stream(w, touch, separate))
    res = {
        "tasks": opts.tasks, "window": opts.window, "reps": opts.reps,
        "slices_tasks_per_s": statistics.median(one), "separate_tasks_per_s": statistics.median(many),
    }
    res["ratio"] = res["slices_tasks_per_s"] / res["separate_tasks_per_s"]
    print(json.dumps(res, indent=2))
    print(f"disjoint slices run at {res['ratio']:.2f}x the speed of separate buffers (target >= 0.5)")
    return 0 if res["ratio"] >= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
