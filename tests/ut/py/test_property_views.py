"""Sequential consistency over 2-D views, by property (contract section 5).

Hypothesis draws random programs: >= 30 tasks over two int64 matrices, (6, 8)
and (8, 8), each task touching views drawn from column blocks, row blocks,
tiles of a blocking, sub-rectangles with (negative) steps, even/odd
interleaved views of the flattened matrix, transposes of sub-blocks, single
columns and rows, with random tags. Each program runs on ONE shared Worker
(2 chips, 2 sub-workers, window 8), mixing sub-workers, any chip and fixed
chips, some tasks inside small scopes; every matrix must equal running the
same task bodies one at a time, in submission order, on numpy copies.

A view touches exactly the bytes of its elements, so disjoint views of one
matrix must also really run at the same time: two tasks on such views meet
at a rendezvous through a no_dep flag array, which only succeeds if neither
waits for the other."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierflow as tf
from conftest import P, body, make_view, ModuleWorker, rendezvous, submit_to

SHAPES = [(6, 8), (8, 8)]
EXAMPLES = 200
MIN_TASKS = 30
RUNS = {"programs": 0, "tasks": 0, "kinds": {}}


# ------------------------------------------------------------------ bodies
def generic(args):
    n = args.num_tensors
    body([args.tensor(i) for i in range(n)], [args.tag(i).name.lower() for i in range(n)], args.scalar(0))


_MODULE = ModuleWorker({"generic": generic, "rendezvous": rendezvous})
worker = _MODULE


def teardown_module(module):
    _MODULE.close()


def submit(w, fn, args, where):
    """fn: "generic" or "rendezvous"; where: "sub", "chip" (any) or "chip0"/"chip1"."""
    return submit_to(w, w.h, fn, args, where)


def divisors(n):
    return [b for b in range(1, n + 1) if n % b == 0 and b < n]


KINDS = ["col", "row", "tile", "rect", "inter", "tblock", "tslice", "colj", "rowi", "all"]
STEPS = [1, 1, 2, 3, -1, -2, -3]


def draw_view(draw, shape):
    """Draws a view descriptor of a matrix of `shape` (plain draws: strategies
    built per draw, as flatmap does, make generation the bottleneck)."""
    R, C = shape
    kind = draw(st.sampled_from(KINDS))
    if kind == "col":
        bw = draw(st.sampled_from(divisors(C)))
        return ("col", bw, draw(st.integers(0, C // bw - 1)))
    if kind == "row":
        bh = draw(st.sampled_from(divisors(R)))
        return ("row", bh, draw(st.integers(0, R // bh - 1)))
    if kind == "tile":
        bh = draw(st.sampled_from([b for b in divisors(R) if b > 1]))
        bw = draw(st.sampled_from([b for b in divisors(C) if b > 1]))
        return ("tile", bh, bw, draw(st.integers(0, R // bh - 1)), draw(st.integers(0, C // bw - 1)))
    rows, cols, steps = st.integers(0, R), st.integers(0, C), st.sampled_from(STEPS)
    if kind == "rect":
        return ("rect", draw(rows), draw(rows), draw(steps), draw(cols), draw(cols), draw(steps))
    if kind == "inter":
        s = draw(st.sampled_from([2, 2, 3]))
        return ("inter", draw(st.integers(0, s - 1)), s)
    if kind == "tblock":
        return ("tblock", draw(rows), draw(rows), draw(cols), draw(cols))
    if kind == "tslice":
        return ("tslice", draw(cols), draw(cols), draw(steps), draw(rows), draw(rows))
    if kind == "colj":
        return ("colj", draw(st.integers(0, C - 1)))
    if kind == "rowi":
        return ("rowi", draw(st.integers(0, R - 1)), draw(st.booleans()))
    return ("all",)


TAGS = ["input", "output", "inout"]
WHERE = ["sub", "chip", "chip0", "chip1"]


@st.composite
def programs(draw):
    tasks = []
    for _ in range(draw(st.integers(MIN_TASKS, 45))):
        accesses = []
        for _ in range(draw(st.integers(1, 3))):
            b = draw(st.integers(0, len(SHAPES) - 1))
            accesses.append((b, draw_view(draw, SHAPES[b]), draw(st.sampled_from(TAGS))))
        # scope_break 0 closes the current scope after this task
        tasks.append((accesses, draw(st.sampled_from(WHERE)), draw(st.integers(0, 3))))
    use_scopes = draw(st.booleans())
    return tasks, use_scopes


def initial(b):
    return (np.arange(np.prod(SHAPES[b]), dtype=np.int64).reshape(SHAPES[b]) * (b + 2) + 1) % P


# ---------------------------------------------------------------- property
@pytest.mark.timeout(600)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs())
def test_random_view_programs_equal_sequential_execution(program):
    tasks, use_scopes = program
    w = worker()
    mats = [w.share(initial(b)) for b in range(len(SHAPES))]
    ref = [initial(b) for b in range(len(SHAPES))]
    scope, in_scope = None, 0
    for k, (accesses, where, scope_break) in enumerate(tasks):
        if use_scopes and scope is None:
            scope = w.scope()
            scope.__enter__()
            in_scope = 0
        args = tf.TaskArgs()
        views, tags = [], []
        for b, d, tag in accesses:
            getattr(args, tag)(make_view(mats[b], d))
            views.append(make_view(ref[b], d))
            tags.append(tag)
            RUNS["kinds"][d[0]] = RUNS["kinds"].get(d[0], 0) + 1
        args.scalar(k)
        submit(w, "generic", args, where)
        body(views, tags, k)
        in_scope += 1
        # Open scopes hold at most 4 < window - 1 tasks, so a submit can always proceed.
        if scope is not None and (scope_break == 0 or in_scope >= 4):
            scope.__exit__(None, None, None)
            scope = None
    if scope is not None:
        scope.__exit__(None, None, None)
    w.drain()
    for b in range(len(SHAPES)):
        np.testing.assert_array_equal(mats[b], ref[b], err_msg=f"matrix {b} differs from sequential execution")
    RUNS["programs"] += 1
    RUNS["tasks"] += len(tasks)


@pytest.mark.timeout(60)
def test_the_property_really_ran_enough_programs():
    """Runs after the property test (file order): every example finished and
    was checked, so the property covered >= 200 programs of >= 30 tasks and
    every kind of view."""
    print(f"view property: {RUNS['programs']} programs, {RUNS['tasks']} tasks, views {RUNS['kinds']}")
    assert RUNS["programs"] >= EXAMPLES, RUNS
    assert RUNS["tasks"] >= MIN_TASKS * EXAMPLES, RUNS
    assert set(RUNS["kinds"]) == set(KINDS)
    w = _MODULE.w
    assert w is not None
    stats = w.stats()
    assert stats["failed"] == 0 and stats["completed"] >= RUNS["tasks"], stats


@pytest.mark.timeout(60)
def test_the_reference_detects_reordering():
    """The op program is order-sensitive: swapping two conflicting tasks
    (an inout column block and a transposed sub-block that overlaps it)
    changes the result, so the property can fail."""
    x1, x2 = initial(0), initial(0)
    for x, order in ((x1, (1, 2)), (x2, (2, 1))):
        for k in order:
            d = ("col", 4, 0) if k == 1 else ("tblock", 2, 5, 1, 6)
            body([make_view(x, d)], ["inout"], k)
    assert not np.array_equal(x1, x2)


def _elements(shape, d):
    return set(make_view(np.arange(np.prod(shape)).reshape(shape), d).reshape(-1).tolist())


@pytest.mark.timeout(60)
def test_the_view_kinds_touch_the_intended_elements():
    """The descriptors mean what the property assumes: blockings partition
    the matrix, even/odd interleaved views too, a transposed sub-block
    touches the elements of the sub-block, negative steps stay in range."""
    for shape in SHAPES:
        R, C = shape
        n = R * C
        for bw in divisors(C):
            parts = [_elements(shape, ("col", bw, j)) for j in range(C // bw)]
            assert sum(map(len, parts)) == n and set().union(*parts) == set(range(n))
        assert _elements(shape, ("inter", 0, 2)) | _elements(shape, ("inter", 1, 2)) == set(range(n))
        assert not _elements(shape, ("inter", 0, 2)) & _elements(shape, ("inter", 1, 2))
        tiles = [_elements(shape, ("tile", 2, 4, i, j)) for i in range(R // 2) for j in range(C // 4)]
        assert sum(map(len, tiles)) == n and set().union(*tiles) == set(range(n))
        assert _elements(shape, ("tblock", 1, 3, 2, 5)) == {r * C + c for r in (1, 2) for c in (2, 3, 4)}
        assert _elements(shape, ("tslice", 0, C, -1, 0, R)) == set(range(n))
        assert _elements(shape, ("rect", 0, R, -2, 0, C, -3)) == {r * C + c for r in range(R - 1, -1, -2) for c in range(C - 1, -1, -3)}


# ------------------------------------------------------------- concurrency
def _mat(w, b):
    m = w.alloc(SHAPES[b], np.int64)
    m[...] = 0
    return m


# Pairs of views of one matrix that touch disjoint bytes; each must run at the same time.
DISJOINT = {
    "column blocks": (0, ("col", 4, 0), ("col", 4, 1)),
    "even/odd of the flattened matrix": (0, ("inter", 0, 2), ("inter", 1, 2)),
    "tiles of a 2x2 blocking": (1, ("tile", 4, 4, 0, 1), ("tile", 4, 4, 1, 0)),
    "transposed sub-blocks": (0, ("tblock", 0, 6, 0, 3), ("tslice", 3, 8, 1, 0, 6)),
    "single columns": (1, ("colj", 2), ("colj", 3)),
    "negative-step rectangles": (0, ("rect", 0, 6, -2, 0, 8, -1), ("rect", 0, 6, 2, 0, 8, -3)),
    "row block and transposed column block": (1, ("row", 4, 0), ("tblock", 4, 8, 0, 8)),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", [("chip0", "chip1"), ("sub", "sub"), ("sub", "chip"), ("chip", "chip")])
@pytest.mark.parametrize("pair", sorted(DISJOINT))
def test_disjoint_views_run_concurrently(pair, where):
    b, d0, d1 = DISJOINT[pair]
    assert not _elements(SHAPES[b], d0) & _elements(SHAPES[b], d1)
    w = worker()
    m = _mat(w, b)
    f = w.alloc(3, np.int32)
    f[:] = 0
    t0 = submit(w, "rendezvous", tf.TaskArgs().output(make_view(m, d0)).no_dep(f).scalar(0).scalar(1), where[0])
    t1 = submit(w, "rendezvous", tf.TaskArgs().inout(make_view(m, d1)).no_dep(f).scalar(1).scalar(0), where[1])
    w.drain()  # a serialized pair raises TimeoutError inside a task -> TaskError here
    assert t0.state in ("completed", "consumed") and t1.state in ("completed", "consumed")
    ref = np.zeros(SHAPES[b], np.int64)
    make_view(ref, d0)[...] = 1
    make_view(ref, d1)[...] = 2
    np.testing.assert_array_equal(m, ref)


@pytest.mark.timeout(120)
def test_a_reader_between_two_disjoint_writers_does_not_serialize_them():
    """A reader of one column block does not hold back a writer of the other
    block: the writer meets the first task although a reader of the
    first block was submitted between them."""
    w = worker()
    m = _mat(w, 0)
    f = w.alloc(3, np.int32)
    f[:] = 0
    out = _mat(w, 1)
    t0 = submit(w, "rendezvous", tf.TaskArgs().output(make_view(m, ("col", 4, 0))).no_dep(f).scalar(0).scalar(1), "chip0")
    reader = submit(w, "generic", tf.TaskArgs().input(make_view(m, ("col", 4, 0))).output(out[0:1, 0:1]).scalar(5), "sub")
    t1 = submit(w, "rendezvous", tf.TaskArgs().inout(make_view(m, ("tblock", 0, 6, 4, 8))).no_dep(f).scalar(1).scalar(0), "chip1")
    w.drain()
    assert all(t.state in ("completed", "consumed") for t in (t0, reader, t1))
    assert np.all(m[:, :4] == 1) and np.all(m[:, 4:] == 2)
    assert out[0, 0] == (5 * 7 + 4 * 6) % P
