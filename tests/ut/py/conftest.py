"""Shared fixtures: Workers that are always closed, and a check that their
children are gone afterwards."""
import os

import pytest

import tierflow as tf


def process_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before, or between the open and the read
        return False


@pytest.fixture
def make_worker(worker_factory):
    """The same as worker_factory (the name the older test files use)."""
    return worker_factory


# ---------------------------------------------------------------------------
# Helpers and fixtures shared by the behaviour files (test_lifecycle.py,
# test_alloc.py, test_dependencies.py, ...).

def _parents() -> dict:
    """{pid: parent pid} of every live (non-zombie) process, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if fields[0] != "Z":
            out[int(name)] = int(fields[1])
    return out


def children_of(pid: int) -> set:
    """Pids of the live (non-zombie) direct children of `pid`, from /proc."""
    return {p for p, parent in _parents().items() if parent == pid}


def descendants_of(pid: int) -> set:
    """Pids of every live (non-zombie) descendant of `pid`, at any depth."""
    parent_of = _parents()
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier and p not in out}
        out |= frontier
    return out


def wait_until(pred, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Polls pred() until it is true or `timeout` seconds passed; returns its last value."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def worker_factory():
    """worker_factory(**kw) -> an un-initialised tf.Worker (level=3 by
    default). At teardown every Worker is closed, and afterwards neither
    one of its children (w.pids()) nor any other new child of this process
    (e.g. a fork server) may still be running."""
    before = children_of(os.getpid())
    before_all = descendants_of(os.getpid())
    made = []

    def make(**kw):
        kw.setdefault("level", 3)
        w = tf.Worker(**kw)
        made.append(w)
        return w

    yield make
    pids = []
    for w in made:
        try:
            pids += list(w.pids().values())
        except (tf.WorkerClosed, tf.WorkerStateError):
            pass
    for w in made:
        w.close()
    gone = wait_until(lambda: [p for p in pids if process_running(p)] == [], timeout=5)
    assert gone, f"children survived close(): {[p for p in pids if process_running(p)]}"
    assert wait_until(lambda: children_of(os.getpid()) <= before, timeout=5), \
        f"new child processes survived close(): {children_of(os.getpid()) - before}"
    # Levels above 3 have descendants at every depth: none may survive either.
    assert wait_until(lambda: descendants_of(os.getpid()) <= before_all, timeout=5), \
        f"descendants survived close(): {descendants_of(os.getpid()) - before_all}"


# ---------------------------------------------------------------------------
# Task bodies and a module-wide Worker shared by the dependency and property
# test files.

RENDEZVOUS_TIMEOUT = 20.0


def rendezvous(args):
    """Tensor 0: a data view (written data[...] = me + 1 when writable);
    tensor 1 (no_dep): flags. Scalars: me, partner. Raises unless the
    partner runs at the same time — "runs concurrently", proven without
    timing."""
    import time
    data, flags = args.tensor(0), args.tensor(1)
    me, partner = args.scalar(0), args.scalar(1)
    flags[me] = 1
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT
    while flags[partner] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {me} never met task {partner}: they were serialized")
        time.sleep(0.001)
    if data.flags.writeable:
        data[...] = me + 1


def register_everywhere(w, fns):
    """Registers every fn(args) of {name: fn} as the sub-worker function
    `name` and as the kernel `k<name>`; returns the handles."""
    h = {}
    for name, fn in fns.items():
        h[name] = w.register_sub(fn)
        h["k" + name] = w.register_kernel(lambda args, chip, fn=fn: fn(args))
    return h


def submit_to(w, handles, name, args, where="sub"):
    """Submits `name` through `w` (a Worker or a Session) to where="sub" (any
    sub-worker), "chip" (any chip) or "chip<i>"; returns its Task."""
    if where == "sub":
        return w.submit_sub(handles[name], args)
    return w.submit_next_level(handles["k" + name], args, worker=None if where == "chip" else int(where[4:]))


class ModuleWorker:
    """The one Worker a test module shares — hypothesis examples cannot use
    function-scoped fixtures. Created on first call (2 chips, 2 sub-workers,
    window 8 unless given) with `fns` registered everywhere (w.h holds the
    handles); close() it from the module's teardown_module."""

    def __init__(self, fns, **kw):
        self._fns = fns
        self._kw = {"level": 3, "chips": 2, "sub_workers": 2, "window": 8, **kw}
        self.w = None

    def __call__(self):
        if self.w is None:
            w = tf.Worker(**self._kw)
            w.h = register_everywhere(w, self._fns)
            w.init()
            self.w = w
        return self.w

    def submit(self, name, args, where="sub"):
        return submit_to(self(), self.w.h, name, args, where)

    def close(self):
        if self.w is not None:
            self.w.close()
            self.w = None


# ---------------------------------------------------------------------------
# The op program of the property tests (test_property_views, _failures,
# _sessions): order-sensitive and exact (integers mod a prime), so any
# reordering of conflicting tasks changes the result.

P = 1000003  # a prime: the body is exact integer arithmetic mod P


def body(views, tags, k):
    """Task k of a random program: reads (input and inout) are summed first,
    then the writes are applied in order."""
    total = sum(int(v.sum()) for v, t in zip(views, tags) if t != "output") % P
    for v, t in zip(views, tags):
        if t == "output":
            v[...] = (k * 7 + total) % P
        elif t == "inout":
            v[...] = (v * 3 + k + total) % P


# The views the property tests take, named by small tuples (a hypothesis
# strategy draws the tuple; the same view is then taken of the arena array
# and of its numpy reference).
def _span(lo, hi, step):
    """A slice over [lo, hi) with |step|; a negative step walks it backwards."""
    lo, hi = min(lo, hi), max(lo, hi)
    if step > 0 or hi == lo:
        return slice(lo, hi, abs(step))
    return slice(hi - 1, lo - 1 if lo > 0 else None, step)


def make_view(m, d):
    """The view that descriptor d names, of array m (the arena array, its
    numpy reference copy, or an index array: all get the same elements)."""
    kind = d[0]
    if kind == "slice":        # 1-D, with a step, possibly negative
        _, lo, hi, step = d
        return m[_span(lo, hi, step)]
    if kind == "col":          # column block j of width bw
        _, bw, j = d
        return m[:, j * bw:(j + 1) * bw]
    if kind == "row":          # row block i of height bh
        _, bh, i = d
        return m[i * bh:(i + 1) * bh, :]
    if kind == "tile":         # tile (i, j) of a (bh, bw) blocking
        _, bh, bw, i, j = d
        return m[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
    if kind == "rect":         # sub-rectangle with steps, possibly negative
        _, r0, r1, rs, c0, c1, cs = d
        return m[_span(r0, r1, rs), _span(c0, c1, cs)]
    if kind == "inter":        # interleaved view of the flattened matrix
        _, k, s = d
        return m.reshape(-1)[k::s]
    if kind == "tblock":       # transpose of a sub-block
        _, r0, r1, c0, c1 = d
        return m[min(r0, r1):max(r0, r1), min(c0, c1):max(c0, c1)].T
    if kind == "tslice":       # a slice of the transpose, with a step on its rows
        _, c0, c1, cs, r0, r1 = d
        return m.T[_span(c0, c1, cs), min(r0, r1):max(r0, r1)]
    if kind == "colj":         # single column
        return m[:, d[1]]
    if kind == "rowi":         # single row, possibly reversed
        _, i, rev = d
        return m[i, ::-1] if rev else m[i]
    if kind == "all":
        return m
    raise AssertionError(d)
