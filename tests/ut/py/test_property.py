"""Sequential consistency by property (contract section 5).

Hypothesis draws random programs: >= 30 tasks over 2-3 float64 arena buffers
of 64 elements, each task touching random slices (start/stop/step) with
random tags. Each program runs on ONE shared Worker (2 chips, 2 sub-workers,
window 8), mixing sub-workers, any chip and fixed chips, some tasks inside
small scopes; the buffers must equal running the same task bodies one at a
time, in submission order, on plain numpy arrays."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierflow as tf
from conftest import ModuleWorker, submit_to

LEN = 64
EXAMPLES = 200
RUNS = {"programs": 0, "tasks": 0}

A_CHOICES = [0.5, -0.75, 1.25, 1.0]
B_CHOICES = [0.0, 0.015625, -0.03125, 0.125]


def body(tensors, tags, k, a, b):
    """The op program of task k. Order-sensitive (non-commutative affine
    maps with the task index) so any reordering of conflicting tasks shows.
    Inputs are summed first, then outputs/inouts are updated in order."""
    s = 0.0
    for t, tag in zip(tensors, tags):
        if tag == tf.Tag.INPUT:
            s += float(t.sum())
    for t, tag in zip(tensors, tags):
        if tag == tf.Tag.INOUT:
            t[...] = t * a + s * b + k
        elif tag == tf.Tag.OUTPUT:
            t[...] = s * b + k * 0.5 + a


def generic(args):
    """Reads the op program from scalars: task index, a, b."""
    n = args.num_tensors
    body([args.tensor(i) for i in range(n)], [args.tag(i) for i in range(n)],
         args.scalar(0), args.scalar(1), args.scalar(2))


_MODULE = ModuleWorker({"generic": generic})
worker = _MODULE


def teardown_module(module):
    _MODULE.close()


TAGS = ["input", "output", "inout"]
TAG_OF = {"input": tf.Tag.INPUT, "output": tf.Tag.OUTPUT, "inout": tf.Tag.INOUT}


@st.composite
def programs(draw):
    nbuf = draw(st.integers(2, 3))
    access = st.tuples(st.integers(0, nbuf - 1), st.integers(0, LEN), st.integers(0, LEN),
                       st.integers(1, 5), st.booleans(), st.sampled_from(TAGS))
    task = st.fixed_dictionaries({
        "accesses": st.lists(access, min_size=1, max_size=4),
        "where": st.sampled_from(["sub", "chip", "chip0", "chip1"]),
        "a": st.integers(0, len(A_CHOICES) - 1),
        "b": st.integers(0, len(B_CHOICES) - 1),
        "scope_break": st.integers(0, 3),  # 0: close the current scope after this task
    })
    tasks = draw(st.lists(task, min_size=30, max_size=50))
    use_scopes = draw(st.booleans())
    return nbuf, tasks, use_scopes


def view(buf, lo, hi, step, reverse):
    lo, hi = min(lo, hi), max(lo, hi)
    return buf[hi - 1:lo - 1 if lo > 0 else None:-step] if reverse and hi > lo else buf[lo:hi:step]


def submit(w, args, where):
    submit_to(w, w.h, "generic", args, where)


@pytest.mark.timeout(1800)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_equal_sequential_execution(program):
    nbuf, tasks, use_scopes = program
    w = worker()
    init = [np.linspace(-1.0, 1.0, LEN) * (i + 1) for i in range(nbuf)]
    bufs = [w.share(x) for x in init]
    ref = [x.copy() for x in init]
    scope = None
    in_scope = 0
    for k, task in enumerate(tasks):
        if use_scopes and scope is None:
            scope = w.scope()
            scope.__enter__()
            in_scope = 0
        a, b = A_CHOICES[task["a"]], B_CHOICES[task["b"]]
        args = tf.TaskArgs().scalar(k).scalar(a).scalar(b)
        views, tags = [], []
        for buf, lo, hi, step, rev, tag in task["accesses"]:
            getattr(args, tag)(view(bufs[buf], lo, hi, step, rev))
            views.append(view(ref[buf], lo, hi, step, rev))
            tags.append(TAG_OF[tag])
        submit(w, args, task["where"])
        body(views, tags, k, a, b)
        in_scope += 1
        # A scope may hold at most window-1 tasks, or the next submit could
        # never proceed (that is tf.WindowExhausted, tested elsewhere).
        if scope is not None and (task["scope_break"] == 0 or in_scope >= 4):
            scope.__exit__(None, None, None)
            scope = None
    if scope is not None:
        scope.__exit__(None, None, None)
    w.drain()
    for i in range(nbuf):
        np.testing.assert_array_equal(bufs[i], ref[i], err_msg=f"buffer {i} differs from sequential execution")
    RUNS["programs"] += 1
    RUNS["tasks"] += len(tasks)


def test_the_property_really_ran_enough_programs():
    """Runs after the property test (file order): every example finished and
    was checked, so the property covered >= 200 programs of >= 30 tasks."""
    print(f"property test: {RUNS['programs']} programs, {RUNS['tasks']} tasks")
    assert RUNS["programs"] >= EXAMPLES, RUNS
    assert RUNS["tasks"] >= 30 * EXAMPLES
    w = _MODULE.w
    assert w is not None
    stats = w.stats()
    assert stats["failed"] == 0 and stats["completed"] >= RUNS["tasks"]


def test_the_reference_detects_reordering():
    """The op program is order-sensitive: swapping two conflicting tasks
    changes the result (so the property can fail)."""
    x1, x2 = np.linspace(-1, 1, LEN), np.linspace(-1, 1, LEN)
    body([x1], [tf.Tag.INOUT], 1, 0.5, 0.0)
    body([x1], [tf.Tag.INOUT], 2, 1.25, 0.0)
    body([x2], [tf.Tag.INOUT], 2, 1.25, 0.0)
    body([x2], [tf.Tag.INOUT], 1, 0.5, 0.0)
    assert not np.array_equal(x1, x2)
