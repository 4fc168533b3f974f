"""Sequential consistency, by property: random programs over a few buffers,
random slices (with steps) and random tags, run on 2 chips + 2 sub-workers
with a small window, must leave every buffer exactly as running the tasks one
by one in submission order would."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierflow as tf
from conftest import ModuleWorker

BUFS, LEN = 3, 40
PROGRAMS = {"count": 0}


def body(views, tags, k):
    """Order-sensitive and exact (integers): any reordering of conflicting
    tasks changes the result."""
    total = sum(int(v.sum()) for v, t in zip(views, tags) if t != "output") % 1000003
    for v, t in zip(views, tags):
        if t == "output":
            v[...] = (k * 7 + total) % 1000003
        elif t == "inout":
            v[...] = (v * 3 + k + total) % 1000003


def task(args):
    n = args.num_tensors
    tags = [args.tag(i).name.lower() for i in range(n)]
    body([args.tensor(i) for i in range(n)], tags, args.scalar(0))


_MODULE = ModuleWorker({"task": task})
worker = _MODULE


def teardown_module(module):
    _MODULE.close()


access = st.tuples(st.integers(0, BUFS - 1), st.integers(0, LEN - 1), st.integers(0, LEN),
                   st.integers(1, 3), st.sampled_from(["input", "output", "inout"]))
task_st = st.tuples(st.lists(access, min_size=1, max_size=3), st.sampled_from(["sub", "chip", "chip0", "chip1"]))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(task_st, min_size=30, max_size=60))
def test_random_programs_match_sequential_execution(program):
    w = worker()
    bufs = [w.share(np.arange(LEN, dtype=np.int64) * (b + 1)) for b in range(BUFS)]
    ref = [np.arange(LEN, dtype=np.int64) * (b + 1) for b in range(BUFS)]
    for k, (accesses, where) in enumerate(program):
        a = tf.TaskArgs()
        views, tags = [], []
        for b, lo, hi, step, tag in accesses:
            getattr(a, tag)(bufs[b][lo:hi:step])
            views.append(ref[b][lo:hi:step])
            tags.append(tag)
        a.scalar(k)
        _MODULE.submit("task", a, where)
        body(views, tags, k)
    w.drain()
    for b in range(BUFS):
        np.testing.assert_array_equal(bufs[b], ref[b])
    PROGRAMS["count"] += 1


def test_at_least_200_programs_ran():
    # Runs after the property test in file order: it really ran >= 200 programs.
    assert PROGRAMS["count"] >= 200, PROGRAMS
