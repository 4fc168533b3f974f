"""Tracing (see benchmarks/WORKLOADS.md, T1 and T2).

T1, the cost of recording: W1 (20,000 no-op tasks on 2 sub-workers, and on
2 native chips) with trace= on against the same Worker kind with it off, in
the same run, repetitions alternated; tasks/s of the submit-to-drain window
(the file is written at close, outside it).

T2, the size of a big trace: `python benchmarks/bench_trace.py --tasks
1000000` runs a million no-op chip tasks with trace="....json.gz" and
reports the file's size and the time close() took to write it.
"""
import argparse
import os
import statistics
import tempfile
import time

import tierflow as tf
from tierflow.native import demo_kernels_path


def _noop(args):
    pass


def w1_tasks_per_s(traced: bool, kind: str, n: int, workdir: str) -> float:
    trace = os.path.join(workdir, "w1.json.gz") if traced else None
    w = tf.Worker(level=3, sub_workers=2 if kind == "sub" else 0, chips=2 if kind == "chip" else 0,
                  window=4096, trace=trace)
    h = w.register_sub(_noop) if kind == "sub" else w.register_kernel(tf.NativeKernel(demo_kernels_path(), "tf_noop"))
    submit = w.submit_sub if kind == "sub" else w.submit_next_level
    with w:
        args = tf.TaskArgs()
        for _ in range(200):
            submit(h, args)
        w.drain()
        t0 = time.perf_counter()
        for _ in range(n):
            submit(h, args)
        w.drain()
        dt = time.perf_counter() - t0
    return n / dt


def run(measure, reps, quick):
    n = 2000 if quick else 20000
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for kind in ("sub", "chip"):
            on, off = [], []
            w1_tasks_per_s(False, kind, n, d)  # warm-up
            for _ in range(reps):  # alternated, so a noisy stretch hits both
                off.append(w1_tasks_per_s(False, kind, n, d))
                on.append(w1_tasks_per_s(True, kind, n, d))
            for key, xs in ((f"t1_w1_{kind}_untraced_tasks_per_s", off), (f"t1_w1_{kind}_traced_tasks_per_s", on)):
                out[key] = {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "reps": xs}
    return out


def ratios(rt):
    m = lambda d: d["median"]  # noqa: E731
    return {f"t1 W1 traced / untraced, {kind}": m(rt[f"t1_w1_{kind}_traced_tasks_per_s"]) /
            m(rt[f"t1_w1_{kind}_untraced_tasks_per_s"]) for kind in ("sub", "chip")}


TARGETS = {"t1 W1 traced / untraced, sub": (">=", 0.8), "t1 W1 traced / untraced, chip": (">=", 0.8)}


def big_trace(tasks: int, path: str) -> dict:
    w = tf.Worker(level=3, chips=2, window=8192, trace=path)
    k = w.register_kernel(tf.NativeKernel(demo_kernels_path(), "tf_noop"))
    w.init()
    args = tf.TaskArgs()
    t0 = time.perf_counter()
    for _ in range(tasks):
        w.submit_next_level(k, args)
    w.drain()
    ran = time.perf_counter() - t0
    t1 = time.perf_counter()
    w.close()
    return {"tasks": tasks, "run_s": round(ran, 2), "write_s": round(time.perf_counter() - t1, 2),
            "file_bytes": os.path.getsize(path)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=0, help="T2: write the trace of this many tasks and report its size")
    ap.add_argument("--out", default="/tmp/tierflow-big-trace.json.gz")
    a = ap.parse_args()
    if a.tasks:
        print(big_trace(a.tasks, a.out))
    else:
        def measure(fn, reps):
            xs = [fn() for _ in range(reps)]
            return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}
        res = run(measure, a.reps, False)
        for k, v in res.items():
            print(f"{k:40} {v['median']:10.4g}  ({v['min']:.4g}-{v['max']:.4g})")
        for k, v in ratios(res).items():
            print(f"{k:40} {v:10.3f}  target {TARGETS[k][0]} {TARGETS[k][1]}")
