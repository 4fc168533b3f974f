"""Property: a random level-4 program — orch tasks over slices of one L4
buffer, each running a random level-3 program on views of what it was
given — leaves exactly what running every inner step one by one, in
submission order, leaves."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tierflow as tf

N = 24
ADD, MUL, SET_FROM = 0, 1, 2


def op(args, chip):
    kind, const = args.scalar(0), args.scalar(1)
    if kind == ADD:
        args.tensor(0)[...] += const
    elif kind == MUL:
        args.tensor(0)[...] *= const
    else:
        args.tensor(1)[...] = (int(args.tensor(0).sum()) + const) % 1000


_l3_handles = {}


def run_program(orch, args):
    """Scalars: the inner program, 6 ints per step (kind, a, b, c, d, const);
    tensor 0 is the slice S it writes, tensor 1 (if any) the slice R it reads."""
    k = _l3_handles["op"]
    s = args.tensor(0)
    r = args.tensor(1) if args.num_tensors > 1 else None
    n = args.scalar(0)
    for i in range(n):
        kind, a, b, c, d, const = (args.scalar(1 + 6 * i + j) for j in range(6))
        if kind == SET_FROM and r is not None:
            orch.submit_next_level(k, tf.TaskArgs().input(r[c:d]).output(s[a:b]).scalar(kind).scalar(const))
        else:
            orch.submit_next_level(k, tf.TaskArgs().inout(s[a:b]).scalar(ADD if kind == SET_FROM else kind)
                                   .scalar(const))


@pytest.fixture(scope="module")
def w4():
    w = tf.Worker(level=4)
    for _ in range(2):
        l3 = tf.Worker(level=3, chips=2, window=8)
        _l3_handles["op"] = l3.register_kernel(op)
        w.add_worker(l3)
    w.prog = w.register_orch(run_program)
    w.init()
    yield w
    w.close()


def slice_of(length):
    return st.integers(0, length - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(a + 1, length)))


@st.composite
def l4_task(draw):
    s0, s1 = draw(slice_of(N))
    reads = draw(st.booleans())
    r = draw(slice_of(N)) if reads else None
    n_inner = draw(st.integers(1, 4))
    steps = []
    for _ in range(n_inner):
        kind = draw(st.sampled_from([ADD, MUL, SET_FROM] if reads else [ADD, MUL]))
        a, b = draw(slice_of(s1 - s0))
        c, d = draw(slice_of(r[1] - r[0])) if reads else (0, 0)
        steps.append((kind, a, b, c, d, draw(st.integers(1, 3))))
    return (s0, s1), r, steps


def model(x, tasks):
    for (s0, s1), r, steps in tasks:
        s = x[s0:s1]
        rv = x[r[0]:r[1]] if r else None
        for kind, a, b, c, d, const in steps:
            if kind == ADD:
                s[a:b] += const
            elif kind == MUL:
                s[a:b] *= const
            else:
                s[a:b] = (int(rv[c:d].sum()) + const) % 1000


@pytest.mark.timeout(300)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(tasks=st.lists(l4_task(), min_size=1, max_size=8), workers=st.lists(st.sampled_from([None, 0, 1]),
                                                                            min_size=8, max_size=8))
def test_random_level4_programs_equal_sequential_execution(w4, tasks, workers):
    x = w4.alloc(N, np.int64)
    x[...] = np.arange(N) % 7
    expect = x.copy()
    for i, ((s0, s1), r, steps) in enumerate(tasks):
        a = tf.TaskArgs().inout(x[s0:s1])
        if r is not None:
            a.input(x[r[0]:r[1]])
        a.scalar(len(steps))
        for step in steps:
            for v in step:
                a.scalar(v)
        w4.submit_next_level(w4.prog, a, worker=workers[i])
    w4.drain(timeout=120)
    model(expect, tasks)
    # at most 32 multiplications by <= 3 of values < 7: far from int64 overflow
    assert x.tolist() == expect.tolist()
