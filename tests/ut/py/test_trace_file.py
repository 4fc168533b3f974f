"""trace="run.json": a Chrome Trace Event file that Perfetto renders — the
things that make it drop or collapse tracks checked on known DAGs: integer
pids and tids, names and sort indices for every track, one slice per task
run stamped where it ran, slices of a track never overlapping, one flow per
dependency edge with both points inside their slices."""
import gzip
import json
import os
import time
from collections import Counter, defaultdict

import pytest

import tierflow as tf


def inc(args):
    """Adds 1 to its last tensor (the others are read)."""
    time.sleep(0.002)
    args.tensor(args.num_tensors - 1)[...] += 1


def kinc(args, chip):
    args.tensor(args.num_tensors - 1)[...] += 1


def boom(args):
    raise ValueError("boom")


def die_once(args):
    import signal
    marker = args.tensor(0)
    if marker[0] == 0:
        marker[0] = 1
        os.kill(os.getpid(), signal.SIGKILL)


def load(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def check_perfetto_rules(trace):
    """The structural rules; returns (slices by (pid, tid), flows as (s, f))."""
    events = trace["traceEvents"]
    named_procs = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    named_threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    sorted_threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_sort_index"}
    assert named_threads == sorted_threads
    for e in events:
        assert isinstance(e["pid"], int) and 0 < e["pid"] < 1000, e
        assert isinstance(e["tid"], int) and 0 <= e["tid"] < 1 << 31, e
        assert e.get("name"), e  # empty names break the viewer
    slices = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            assert (e["pid"], e["tid"]) in named_threads and e["pid"] in named_procs
            assert e["dur"] >= 0
            slices[(e["pid"], e["tid"])].append(e)
    for track, ss in slices.items():
        ss.sort(key=lambda e: e["ts"])
        for a, b in zip(ss, ss[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-3, f"slices overlap on {track}: {a} {b}"
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts.keys() == ends.keys(), "every flow has its two ends"
    for fid, s in starts.items():
        f = ends[fid]
        assert f["bp"] == "e" and isinstance(fid, int)
        for point in (s, f):
            inside = [x for x in slices[(point["pid"], point["tid"])] if x["ts"] <= point["ts"] <= x["ts"] + x["dur"]]
            assert inside, f"flow point outside every slice: {point}"
    return slices, [(starts[i], ends[i]) for i in starts]


def slice_of(slices, task):
    return [e for ss in slices.values() for e in ss if e["args"]["task"] == task]


def test_a_known_dag_gives_its_slices_and_flows(make_worker, tmp_path):
    path = tmp_path / "run.json"
    w = make_worker(sub_workers=2, chips=1, trace=str(path))
    h, k = w.register_sub(inc), w.register_kernel(kinc)
    w.init()
    a, b, c = w.zeros(4), w.zeros(4), w.zeros(4)
    top = w.submit_sub(h, tf.TaskArgs().inout(a), name="top")                                  # a diamond:
    left = w.submit_sub(h, tf.TaskArgs().input(a).inout(b), name="left")                       # top -> left
    right = w.submit_next_level(k, tf.TaskArgs().input(a).inout(c), name="right")             # top -> right
    bottom = w.submit_sub(h, tf.TaskArgs().input(b).input(c).inout(a), name="bottom")         # both -> bottom
    w.drain()
    w.close()
    trace = load(path)
    slices, flows = check_perfetto_rules(trace)
    runs = [e for ss in slices.values() for e in ss]
    assert sorted(e["name"] for e in runs) == ["bottom", "left", "right", "top"]
    pairs = {(s_["args"]["task"], f_["args"]["task"]) for s_, f_ in
             ((slice_of_point(slices, s), slice_of_point(slices, f)) for s, f in flows)}
    # bottom also follows top (it overwrites what top wrote and both left and right read)
    assert {(top.id, left.id), (top.id, right.id), (left.id, bottom.id), (right.id, bottom.id)} <= pairs
    r = slice_of(slices, right.id)[0]
    assert r["args"] == {"task": right.id, "session": "default", "callable": "kinc", "bytes": 32,
                         "outcome": "completed", "attempt": 1}
    threads = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert threads == {"sub 0", "sub 1", "chip 0"}
    # Times are the workers' own: a run lies within the wall time of the test.
    assert all(e["dur"] >= 1000 for e in runs if e["name"] != "right")  # the subs sleep 2 ms


def slice_of_point(slices, point):
    return next(x for x in slices[(point["pid"], point["tid"])] if x["ts"] <= point["ts"] <= x["ts"] + x["dur"])


def test_an_edge_to_a_producer_that_already_finished_is_a_flow_too(make_worker, tmp_path):
    path = tmp_path / "run.json"
    w = make_worker(sub_workers=1, trace=str(path))
    h = w.register_sub(inc)
    w.init()
    x = w.zeros(4)
    with w.scope():  # the scope keeps the finished producer's slot until it ends
        first = w.submit_sub(h, tf.TaskArgs().inout(x))
        first.wait(30)
        assert first.state == "completed"
        second = w.submit_sub(h, tf.TaskArgs().inout(x))
    w.drain()
    w.close()
    slices, flows = check_perfetto_rules(load(path))
    assert [(slice_of_point(slices, s)["args"]["task"], slice_of_point(slices, f)["args"]["task"])
            for s, f in flows] == [(first.id, second.id)]


def test_failures_and_retries_show_as_outcomes_and_attempts(make_worker, tmp_path):
    path = tmp_path / "run.json.gz"
    w = make_worker(sub_workers=1, trace=str(path))
    h, bad = w.register_sub(die_once), w.register_sub(boom)
    w.init()
    marker = w.zeros(1)
    t = w.submit_sub(h, tf.TaskArgs().inout(marker), retries=1)
    f = w.submit_sub(bad, None)
    with pytest.raises(tf.TaskError):
        w.drain()
    w.close()
    slices, _ = check_perfetto_rules(load(path))
    runs = slice_of(slices, t.id)
    assert [(e["args"]["attempt"], e["args"]["outcome"]) for e in sorted(runs, key=lambda e: e["ts"])] == \
        [(1, "worker_died"), (2, "completed")]
    assert slice_of(slices, f.id)[0]["args"]["outcome"] == "exception"


@pytest.mark.parametrize("mode,expect", [("none", 0), ("cross-worker", None)])
def test_flows_can_be_limited(make_worker, tmp_path, mode, expect):
    path = tmp_path / "run.json"
    w = make_worker(sub_workers=2, trace=str(path), trace_flows=mode)
    h = w.register_sub(inc)
    w.init()
    x = w.zeros(4)
    for _ in range(12):
        w.submit_sub(h, tf.TaskArgs().inout(x))
    w.drain()
    w.close()
    slices, flows = check_perfetto_rules(load(path))
    if expect is not None:
        assert len(flows) == expect
    else:
        assert all(s["tid"] != f["tid"] for s, f in flows)


def test_trace_flush_writes_before_close_and_bad_names_are_refused(make_worker, tmp_path):
    path = tmp_path / "run.json"
    w = make_worker(sub_workers=1, trace=str(path))
    h = w.register_sub(inc)
    w.init()
    x = w.zeros(4)
    w.submit_sub(h, tf.TaskArgs().inout(x))
    w.drain()
    w.trace_flush()
    assert len([e for e in load(path)["traceEvents"] if e["ph"] == "X"]) == 1
    with pytest.raises(ValueError, match="must end in .json or .json.gz"):
        tf.Worker(trace=str(tmp_path / "run.txt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tf.Worker(trace=str(tmp_path / "nope" / "run.json"))
    with pytest.raises(ValueError, match="trace_flows"):
        tf.Worker(trace=str(path), trace_flows="some")
    untraced = make_worker(sub_workers=1)
    untraced.init()
    with pytest.raises(tf.WorkerStateError, match="does not trace"):
        untraced.trace_flush()


def test_a_level_4_trace_has_a_process_track_per_level_3_worker(make_worker, tmp_path):
    path = tmp_path / "run.json"
    templates = [tf.Worker(level=3, chips=2) for _ in range(2)]
    ks = [t.register_kernel(kinc) for t in templates]
    w4 = make_worker(level=4, sub_workers=1, trace=str(path))
    for t in templates:
        w4.add_worker(t)

    def orch(o, args):
        o.submit_next_level(ks[0], tf.TaskArgs().inout(args.tensor(0)))
        o.submit_next_level(ks[0], tf.TaskArgs().inout(args.tensor(0)))

    o = w4.register_orch(orch)
    w4.init()
    xs = [w4.zeros(4) for _ in range(2)]
    for i, x in enumerate(xs):
        w4.submit_next_level(o, tf.TaskArgs().inout(x), worker=i)
    w4.drain()
    w4.close()
    trace = load(path)
    slices, flows = check_perfetto_rules(trace)
    procs = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert procs == {1: f"{w4.name} (level 4)", 2: "l3 0 (level 3)", 3: "l3 1 (level 3)"}
    per_process = Counter(pid for (pid, _tid), ss in slices.items() for _ in ss)
    assert per_process == {1: 2, 2: 2, 3: 2}  # two orch tasks above, two chip tasks in each level 3
    assert len(flows) == 2  # the two chip tasks inside each orch task follow each other
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".part")]
