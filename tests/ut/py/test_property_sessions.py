"""Sessions driven from many threads at once, by property (contract
section 8): 4-8 threads each run a random program in its own session on its
own buffers — and on its own slice of one shared allocation, plus
order-free increments of one shared counter — and every buffer must equal
running that session's program alone, one task at a time, in submission
order."""
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierflow as tf
from conftest import P, body, ModuleWorker, submit_to

LEN = 24
EXAMPLES = 200
RUNS = {"programs": 0, "tasks": 0}


def task(args):
    n = args.num_tensors
    tags = [args.tag(i).name.lower() for i in range(n)]
    body([args.tensor(i) for i in range(n)], tags, args.scalar(0))


def bump(args):
    args.tensor(0)[...] += 1


_MODULE = ModuleWorker({"task": task, "bump": bump}, window=32)


def teardown_module(module):
    _MODULE.close()


access = st.tuples(st.integers(0, 2), st.integers(0, LEN - 1), st.integers(1, LEN), st.integers(1, 3),
                   st.sampled_from(["input", "output", "inout"]))
op = st.one_of(st.tuples(st.just("task"), st.lists(access, min_size=1, max_size=3),
                         st.sampled_from(["sub", "chip", "chip0", "chip1"])),
               st.tuples(st.just("bump"), st.just([]), st.just("sub")))
program = st.lists(op, min_size=8, max_size=20)


@pytest.mark.timeout(1800)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(program, min_size=4, max_size=8))
def test_threads_in_their_own_sessions_each_see_sequential_execution(programs):
    w = _MODULE()
    n = len(programs)
    shared = w.zeros((n, LEN), np.int64)  # one allocation, a row per session
    counter = w.zeros(1, np.int64)
    own = [[w.share(np.arange(LEN, dtype=np.int64) * (i + j + 1)) for j in range(2)] for i in range(n)]
    refs = [[b.copy() for b in own[i]] + [np.zeros(LEN, np.int64)] for i in range(n)]
    errors = []

    def client(i):
        try:
            with w.session(f"prop {i}", weight=1 + i % 3) as s:
                bufs = own[i] + [shared[i]]
                for k, (kind, accesses, where) in enumerate(programs[i]):
                    if kind == "bump":
                        s.submit_sub(w.h["bump"], tf.TaskArgs().inout(counter))
                        continue
                    a = tf.TaskArgs()
                    views, tags = [], []
                    for b, lo, hi, step, tag in accesses:
                        lo, hi = min(lo, hi - 1), max(hi, lo + 1)
                        getattr(a, tag)(bufs[b][lo:hi:step])
                        views.append(refs[i][b][lo:hi:step])
                        tags.append(tag)
                    a.scalar(k)
                    submit_to(s, w.h, "task", a, where)
                    body(views, tags, k)
                s.drain()
        except BaseException as e:  # reported below
            errors.append((i, repr(e)))

    ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    for i in range(n):
        for j in range(2):
            np.testing.assert_array_equal(own[i][j], refs[i][j], err_msg=f"session {i} buffer {j}")
        np.testing.assert_array_equal(shared[i], refs[i][2], err_msg=f"session {i} shared row")
    assert counter[0] == sum(1 for p in programs for o in p if o[0] == "bump")
    RUNS["programs"] += 1
    RUNS["tasks"] += sum(len(p) for p in programs)


def test_the_property_really_ran_enough_programs():
    print(f"session property: {RUNS['programs']} examples, {RUNS['tasks']} tasks")
    assert RUNS["programs"] >= EXAMPLES and RUNS["tasks"] >= EXAMPLES * 4 * 8
