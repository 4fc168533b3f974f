"""tierflow's benchmark suite: one command, one process tree, one run.

    pip install . matplotlib && python benchmarks/run.py [--reps 5] [--quick]

Runs W1-W4 and W4c of benchmarks/WORKLOADS.md on tierflow (2 Python
sub-workers; 2 chips with native kernels) and on ProcessPoolExecutor(2),
measures the machine's limits in the same run (futex round trip in C and in
Python, single-process numpy for W3), the Python submit cost and the engine's
memory per live task, the sessions' fairness (F1, F2, J1, S1), levels
above 3 (L1, L2) and remote level 3 over gRPC (R1-R3: `tierflow daemon`
subprocesses on loopback against raw TCP, a plain gRPC unary call and
ProcessPoolExecutor; this process never imports grpc), prints a
table, and writes benchmarks/results/latest.json and latest.png (a --quick run
writes quick.json and quick.png instead, leaving the recorded run alone). Each figure is the median of the
repetitions (min and max beside it) after one untimed warm-up; ratios are
taken pair by pair within this run.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tierflow as tf  # noqa: E402
from bench_peer import PeerBench  # noqa: E402
from bench_tierflow import TierflowBench  # noqa: E402
import bench_levels  # noqa: E402
import bench_trace  # noqa: E402
import bench_remote  # noqa: E402
import bench_sessions  # noqa: E402
import limits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = {"w1": "tasks/s", "w2": "us/hop", "w3": "s", "w4": "tasks/s", "w4c": "tasks/s"}
HIGHER_IS_BETTER = {"w1": True, "w2": False, "w3": False, "w4": True, "w4c": True}


def measure(fn, reps, quick_args=None):
    fn(**(quick_args or {}))  # untimed warm-up
    xs = [fn() for _ in range(reps)]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "reps": xs}


def submit_cost_us(n=100_000):
    """Python submit path: 100k no-op submits that never block on the window."""
    w = tf.Worker(level=3, sub_workers=2, window=131072)
    h = w.register_sub(lambda args: None)
    with w:
        args = tf.TaskArgs()
        for _ in range(1000):
            w.submit_sub(h, args)
        w.drain()
        t0 = time.perf_counter()
        for _ in range(n):
            w.submit_sub(h, args)
        dt = time.perf_counter() - t0
        w.drain()
    return dt / n * 1e6


def reader_submit_cost_us(n=8000, shared=True):
    """Submit cost of n tasks that each read one 64-byte tensor, all live
    (queued behind a task writing it): the same tensor for every task
    (`shared`, a weight every task reads) or one tensor each."""
    w = tf.Worker(level=3, sub_workers=1, window=n + 8)
    gate = w.register_sub(lambda args: time.sleep(args.scalar(0)))
    noop = w.register_sub(lambda args: None)
    with w:
        x = w.alloc(64)
        own = [w.alloc(64) for _ in range(n)] if not shared else []
        w.submit_sub(gate, tf.TaskArgs().inout(x).scalar(0.3 + n * 2e-5))
        args = [tf.TaskArgs().input(x if shared else own[i]) for i in range(n)]
        t0 = time.perf_counter()
        for a in args:
            w.submit_sub(noop, a)
        dt = time.perf_counter() - t0
        w.drain()
    return dt / n * 1e6


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bytes_per_live_task(window=65536):
    """Engine bookkeeping per live task, from RSS: `window` tasks all waiting
    behind one running task, versus none."""
    w = tf.Worker(level=3, sub_workers=1, window=window)
    gate = w.register_sub(lambda args: time.sleep(args.scalar(0)))
    noop = w.register_sub(lambda args: None)
    with w:
        x = w.alloc(8)
        w.submit_sub(noop, tf.TaskArgs().input(x))  # touch every code path once
        w.drain()
        args = tf.TaskArgs().input(x)
        before = rss()
        w.submit_sub(gate, tf.TaskArgs().inout(x).scalar(3.0))
        for _ in range(window - 1):
            w.submit_sub(noop, args)
        after = rss()
        w.drain()
    return (after - before) / window


def run(reps, quick):
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "platform": platform.platform()}, "reps": reps, "workloads": {}}
    q = {"w1": {"n": 500}, "w2": {"n": 100}, "w3": {"k": 4}, "w4": {"n": 200}, "w4c": {"n": 200}}
    systems = [("tierflow-sub", lambda: TierflowBench("sub")), ("tierflow-chip", lambda: TierflowBench("chip")),
               ("processpool", PeerBench)]
    for name, make in systems:
        bench = make()
        try:
            for wl in ("w1", "w2", "w3", "w4", "w4c"):
                fn = getattr(bench, wl, None)
                if fn is None:  # a peer without shared tensors has no W4c
                    continue
                if quick:
                    res["workloads"].setdefault(wl, {})[name] = measure(lambda fn=fn, kw=q[wl]: fn(**kw), reps)
                else:
                    res["workloads"].setdefault(wl, {})[name] = measure(fn, reps, q[wl])
                print(f"  {name:14s} {wl}: {res['workloads'][wl][name]['median']:.4g} {UNITS[wl]}", flush=True)
        finally:
            bench.close()
    res["limits"] = {
        "futex_roundtrip_c_us": measure(lambda: limits.futex_roundtrip_c_ns() / 1000, reps),
        "futex_roundtrip_py_us": measure(lambda: limits.futex_roundtrip_py_ns() / 1000, reps),
        "w3_numpy_single_process_s": measure(
            (lambda: limits.w3_numpy_single_process_s(k=4)) if quick else limits.w3_numpy_single_process_s, reps),
    }
    res["submit_cost_us"] = measure(lambda: submit_cost_us(10_000 if quick else 100_000), reps)
    n_readers = 1000 if quick else 8000
    res["readers"] = {
        "shared_reader_submit_us": measure(lambda: reader_submit_cost_us(n_readers, True), reps),
        "own_tensor_reader_submit_us": measure(lambda: reader_submit_cost_us(n_readers, False), reps),
    }
    res["sessions"] = bench_sessions.run(max(3, reps // 2 + 1) if not quick else reps, quick)
    print("  sessions: " + ", ".join(f"{k} {v['median']:.4g}" for k, v in res["sessions"].items()
                                     if isinstance(v, dict)), flush=True)
    res["levels"] = bench_levels.run(measure, reps, quick)
    print("  levels: " + ", ".join(f"{k} {v['median']:.4g}" for k, v in res["levels"].items()), flush=True)
    res["trace"] = bench_trace.run(measure, reps, quick)
    print("  trace: " + ", ".join(f"{k} {v['median']:.4g}" for k, v in res["trace"].items()), flush=True)
    res["remote"] = bench_remote.run(measure, reps, quick)
    print("  remote: " + ", ".join(f"{k} {v['median']:.4g}" for k, v in res["remote"].items()), flush=True)
    res["bytes_per_live_task"] = bytes_per_live_task(4096 if quick else 65536)
    return res


def ratios(res):
    wl, lim = res["workloads"], res["limits"]
    m = lambda d: d["median"]  # noqa: E731
    out = {}
    for sysname in ("tierflow-sub", "tierflow-chip"):
        for w in ("w1", "w4"):
            out[f"{w} {sysname} / processpool (x faster)"] = m(wl[w][sysname]) / m(wl[w]["processpool"])
        out[f"w2 {sysname}: processpool hop / tierflow hop (x faster)"] = m(wl["w2"]["processpool"]) / m(wl["w2"][sysname])
        out[f"w3 {sysname}: processpool time / tierflow time (x faster)"] = m(wl["w3"]["processpool"]) / m(wl["w3"][sysname])
        out[f"w3 {sysname} / numpy single process (x slower)"] = m(wl["w3"][sysname]) / m(lim["w3_numpy_single_process_s"])
        out[f"w4c {sysname} / w4 {sysname} (columns of one matrix vs separate buffers)"] = (
            m(wl["w4c"][sysname]) / m(wl["w4"][sysname]))
    ss = res["sessions"]
    out["f1 light p99 wait beside a heavy backlog / alone"] = m(ss["f1_light_p99_beside_heavy_s"]) / m(
        ss["f1_light_p99_alone_s"])
    out["f1 light p99 wait beside a heavy backlog - alone, in task durations"] = (
        m(ss["f1_light_p99_beside_heavy_s"]) - m(ss["f1_light_p99_alone_s"])) / ss["task_s"]
    out["f2 tasks run, weight 3 / weight 1"] = m(ss["f2_weight_3_to_1_ratio"])
    if "f2c_weight_3_to_1_ratio_chips" in ss:
        out["f2c tasks run on chips, weight 3 / weight 1"] = m(ss["f2c_weight_3_to_1_ratio_chips"])
    out["j1 Jain's index, 4 equal sessions"] = m(ss["j1_jain_index_4_sessions"])
    out["s1 W1 over 8 sessions on 8 threads / one session"] = m(ss["s1_w1_8_sessions_8_threads"]) / m(
        ss["s1_w1_one_session"])
    lv = res["levels"]
    for kernel in ("native", "python"):
        out[f"l1 L4 hop / L3 W2 chip hop, {kernel} kernels (x slower)"] = m(lv[f"l1_l4_hop_{kernel}_us"]) / m(
            lv[f"l1_l3_w2_chip_hop_{kernel}_us"])
    out["l2 L4 fan-out / processpool (x faster)"] = m(lv["l2_l4_fanout_tasks_per_s"]) / m(
        lv["l2_processpool_tasks_per_s"])
    out.update(bench_remote.ratios(res["remote"]))
    out.update(bench_trace.ratios(res["trace"]))
    rd = res["readers"]
    out["m1 submit with 8,000 live readers of one tensor / of one tensor each"] = m(
        rd["shared_reader_submit_us"]) / m(rd["own_tensor_reader_submit_us"])
    out["w2 tierflow-chip hop / C futex round trip"] = m(wl["w2"]["tierflow-chip"]) / m(lim["futex_roundtrip_c_us"])
    out["w2 tierflow-sub hop / C futex round trip"] = m(wl["w2"]["tierflow-sub"]) / m(lim["futex_roundtrip_c_us"])
    return out


TARGETS = {
    "w1 tierflow-sub / processpool (x faster)": (">=", 20), "w1 tierflow-chip / processpool (x faster)": (">=", 20),
    "w4 tierflow-sub / processpool (x faster)": (">=", 10), "w4 tierflow-chip / processpool (x faster)": (">=", 10),
    "w2 tierflow-sub: processpool hop / tierflow hop (x faster)": (">=", 20),
    "w2 tierflow-chip: processpool hop / tierflow hop (x faster)": (">=", 20),
    "w3 tierflow-sub: processpool time / tierflow time (x faster)": (">=", 5),
    "w3 tierflow-chip: processpool time / tierflow time (x faster)": (">=", 5),
    "w3 tierflow-sub / numpy single process (x slower)": ("<=", 1.5),
    "w3 tierflow-chip / numpy single process (x slower)": ("<=", 1.5),
    "w2 tierflow-chip hop / C futex round trip": ("<=", 1.5),
    "w2 tierflow-sub hop / C futex round trip": ("<=", 2.5),
    "w4c tierflow-sub / w4 tierflow-sub (columns of one matrix vs separate buffers)": (">=", 0.5),
    "w4c tierflow-chip / w4 tierflow-chip (columns of one matrix vs separate buffers)": (">=", 0.5),
    "f1 light p99 wait beside a heavy backlog / alone": ("<=", 2),
    "f1 light p99 wait beside a heavy backlog - alone, in task durations": ("<=", 2),
    "f2 tasks run, weight 3 / weight 1": ("within", (2.7, 3.3)),
    "f2c tasks run on chips, weight 3 / weight 1": ("within", (2.7, 3.3)),
    "j1 Jain's index, 4 equal sessions": (">=", 0.95),
    "s1 W1 over 8 sessions on 8 threads / one session": (">=", 0.8),
    "l1 L4 hop / L3 W2 chip hop, native kernels (x slower)": ("<=", 3),
    "l1 L4 hop / L3 W2 chip hop, python kernels (x slower)": ("<=", 3),
    "l2 L4 fan-out / processpool (x faster)": (">=", 10),
    "m1 submit with 8,000 live readers of one tensor / of one tensor each": ("<=", 1.5),
    **bench_remote.TARGETS,
    **bench_trace.TARGETS,
}


def table(res, rat):
    lines = ["| workload | tierflow-sub | tierflow-chip | processpool | unit |", "|---|---|---|---|---|"]
    for w, d in res["workloads"].items():
        cells = [f"{d[s]['median']:.4g} ({d[s]['min']:.3g}-{d[s]['max']:.3g})" if s in d else "n/a"
                 for s in ("tierflow-sub", "tierflow-chip", "processpool")]
        lines.append(f"| {w.upper()} | " + " | ".join(cells) + f" | {UNITS[w]} |")
    lim = res["limits"]
    lines += ["", "| limit | median (min-max) |", "|---|---|"]
    for k, d in lim.items():
        lines.append(f"| {k} | {d['median']:.4g} ({d['min']:.3g}-{d['max']:.3g}) |")
    sc = res["submit_cost_us"]
    lines.append(f"| submit cost from Python, us/task (target <= 3) | {sc['median']:.3g} ({sc['min']:.3g}-{sc['max']:.3g}) |")
    lines.append(f"| engine bytes per live task (target <= 1024) | {res['bytes_per_live_task']:.0f} |")
    for k, d in res.get("readers", {}).items():
        lines.append(f"| {k} | {d['median']:.3g} ({d['min']:.3g}-{d['max']:.3g}) |")
    lines += ["", "| remote figure (R1-R3) | median (min-max) |", "|---|---|"]
    for k, d in res.get("remote", {}).items():
        lines.append(f"| {k} | {d['median']:.4g} ({d['min']:.3g}-{d['max']:.3g}) |")
    lines += ["", "| ratio (same run) | value | target | met |", "|---|---|---|---|"]
    for k, v in rat.items():
        op, t = TARGETS.get(k, ("", None))
        ok = None if t is None else (t[0] <= v <= t[1] if op == "within" else v >= t if op == ">=" else v <= t)
        met = "" if ok is None else ("yes" if ok else "NO")
        shown = f"{t[0]}-{t[1]}" if op == "within" else (t if t is not None else "")
        lines.append(f"| {k} | {v:.3g} | {op} {shown} | {met} |")
    return "\n".join(lines)


def chart(res, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, len(res["workloads"]), figsize=(4 * len(res["workloads"]), 4))
    systems = ["tierflow-sub", "tierflow-chip", "processpool"]
    for ax, (w, d) in zip(axes, res["workloads"].items()):
        names = [s for s in systems if s in d]
        vals = [d[s]["median"] for s in names]
        if w == "w4c":  # beside W4 on separate buffers, from zero: the ratio is the point
            names = [f"{s} {x}" for s in names for x in ("W4", "W4c")]
            vals = [res["workloads"][x][s]["median"] for s in systems if s in d for x in ("w4", "w4c")]
        if w == "w2":
            names.append("C futex RT")
            vals.append(res["limits"]["futex_roundtrip_c_us"]["median"])
        if w == "w3":
            names.append("numpy 1-proc")
            vals.append(res["limits"]["w3_numpy_single_process_s"]["median"])
        ax.bar(names, vals, color=["#1f77b4", "#2ca02c", "#d62728", "#7f7f7f"][:len(names)])
        if w != "w4c":
            ax.set_yscale("log")
        ax.set_title(f"{w.upper()} ({UNITS[w]}, {'higher' if HIGHER_IS_BETTER[w] else 'lower'} is better)")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the suite runs")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    opts = ap.parse_args()
    res = run(opts.reps, opts.quick)
    rat = ratios(res)
    res["ratios"] = rat
    os.makedirs(opts.out, exist_ok=True)
    # A quick run checks that the suite works; its figures are not results,
    # so it never replaces the recorded latest run.
    stem = "quick" if opts.quick else "latest"
    with open(os.path.join(opts.out, f"{stem}.json"), "w") as f:
        json.dump(res, f, indent=2)
    print(table(res, rat))
    chart(res, os.path.join(opts.out, f"{stem}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
