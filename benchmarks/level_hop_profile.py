"""Where a level-4 hop spends its time, read from tierflow's own trace.

    python benchmarks/level_hop_profile.py [links]

Runs the L1 chain (see WORKLOADS.md: orch tasks on one int64[8], each
running one native add-one chip task on its level-3 Worker) with
trace= on, then splits every link into the four parts the trace can tell
apart, using the times stamped where each task ran (one monotonic clock
for the whole host):

    l4 gap     the previous link answered -> this link taken by its L3
               (the L3 process answers, the L4 scheduler sees it, posts
               the next link, the L3 process wakes)
    l3 in      taken by the L3 -> its chip task taken by a chip
               (the orch function runs and submits, the L3 scheduler
               wakes and posts, the chip wakes)
    chip       the chip task itself
    l3 out     the chip answered -> the L3 answered the link
               (the L3 scheduler sees it, the drain of the orch task's
               work wakes, the reply is written)

and prints their medians next to the level-3 W2 hop of the same kernel
measured in the same run (chip answered -> next chip task taken: two
hand-offs). A level-4 link is six hand-offs between processes and threads
(L4 scheduler -> L3 process -> L3 scheduler -> chip -> L3 scheduler -> L3
process -> L4 scheduler), each one a futex wake-up when its receiver has
stopped spinning; this shows which of them cost what on this machine.
"""
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import tierflow as tf
from tierflow.native import demo_kernels_path


def slices(path):
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    procs = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == "process_name"}
    out = {}
    for e in events:
        if e.get("ph") == "X":
            out.setdefault(procs[e["pid"]], []).append(e)
    for v in out.values():
        v.sort(key=lambda e: e["ts"])
    return out


def chain_us(w, handle, links):
    """µs per link of a chain of `links` tasks of `handle`, each adding one
    to the same int64[8] (inout) on Worker `w`."""
    x = w.zeros(8, np.int64)
    args = tf.TaskArgs().inout(x)
    t0 = time.perf_counter()
    for _ in range(links):
        w.submit_next_level(handle, args)
    w.drain()
    hop = (time.perf_counter() - t0) / links * 1e6
    assert np.all(x == links), x
    return hop


def level4_parts(links, path):
    lib = demo_kernels_path()
    w4 = tf.Worker(level=4, window=4096, trace=path)
    l3 = tf.Worker(level=3, chips=2, window=256)
    k = l3.register_kernel(tf.NativeKernel(lib, "tf_add_one_i64"))
    w4.add_worker(l3)

    def one_chip_task(orch, args):
        orch.submit_next_level(k, args)

    o = w4.register_orch(one_chip_task)
    w4.init()
    try:
        hop = chain_us(w4, o, links)
    finally:
        w4.close()  # writes the trace
    by_proc = slices(path)
    top = next(v for n, v in by_proc.items() if "(level 4)" in n)
    inner = next(v for n, v in by_proc.items() if "(level 3)" in n)
    assert len(top) == len(inner) == links, (len(top), len(inner))
    parts = {"l4 gap": [], "l3 in": [], "chip": [], "l3 out": []}
    for i, (a, c) in enumerate(zip(top, inner)):
        if i > 0:
            prev = top[i - 1]
            parts["l4 gap"].append(a["ts"] - (prev["ts"] + prev["dur"]))
        parts["l3 in"].append(c["ts"] - a["ts"])
        parts["chip"].append(c["dur"])
        parts["l3 out"].append(a["ts"] + a["dur"] - (c["ts"] + c["dur"]))
    return hop, {k: statistics.median(v) for k, v in parts.items()}


def level3_hop(links):
    w3 = tf.Worker(level=3, chips=2, window=4096)
    k = w3.register_kernel(tf.NativeKernel(demo_kernels_path(), "tf_add_one_i64"))
    w3.init()
    try:
        return chain_us(w3, k, links)
    finally:
        w3.close()


if __name__ == "__main__":
    links = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "l1.json")
        for rep in range(3):
            hop, parts = level4_parts(links, path)
            w2 = level3_hop(links)
            print(f"run {rep + 1}: level-4 link {hop:.1f} µs (traced) = "
                  + " + ".join(f"{k} {v:.1f}" for k, v in parts.items())
                  + f" (medians);  level-3 W2 hop {w2:.1f} µs")
