"""A Worker belongs to the process that created it (contract sections 3, 4).

A task runs in a forked child, and users fork too: a Worker used from a
forked copy must refuse clearly (it would otherwise allocate the parent's
memory a second time, or shut the parent's pool down), and a forked copy
that exits must leave the parent's pool alone."""
import os

import numpy as np
import pytest

import tierflow as tf


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=1, chips=1)
    holder = {}

    @w.sub
    def alloc_inside(args):
        holder["w"].alloc(4)

    @w.sub
    def submit_inside(args):
        holder["w"].submit_sub(holder["noop"])

    @w.sub
    def fill(args):
        args.tensor(0)[...] = args.scalar(0)

    @w.sub
    def noop(args):
        pass

    holder.update(w=w, noop=noop)
    w.init()
    w.h = dict(alloc_inside=alloc_inside, submit_inside=submit_inside, fill=fill, noop=noop)
    return w


@pytest.mark.timeout(60)
def test_alloc_inside_a_task_raises_instead_of_aliasing_the_parents_memory(w):
    x = w.zeros(16, np.int64)
    t = w.submit_sub(w.h["alloc_inside"])
    err = t.exception(timeout=30)
    assert err is not None and err.failures[0].kind == "exception"
    assert "WorkerStateError" in err.failures[0].message and "belongs to process" in err.failures[0].message
    assert isinstance(err.__cause__, tf.WorkerStateError)
    w.submit_sub(w.h["fill"], tf.TaskArgs().output(x[8:]).scalar(7))
    with pytest.raises(tf.TaskError):
        w.drain()
    assert np.all(x[:8] == 0) and np.all(x[8:] == 7), "the parent's array was aliased"


@pytest.mark.timeout(60)
def test_a_task_that_submits_is_told_that_only_orch_functions_can(w):
    err = w.submit_sub(w.h["submit_inside"]).exception(timeout=30)
    msg = err.failures[0].message
    assert "WorkerStateError" in msg and "a task cannot submit" in msg and "orch functions can" in msg
    with pytest.raises(tf.TaskError):
        w.drain()


def _in_child(fn):
    """Runs fn() in an os.fork()ed child of this test process, which then
    exits as an interpreter would (atexit handlers, then finalizers of the
    Workers it inherited); returns its exit code (0: fn returned)."""
    import atexit
    import gc
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
            atexit._run_exitfuncs()
            for obj in gc.get_objects():
                if isinstance(obj, tf.Worker):
                    obj.__del__()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


SCRIPT = """
import os, sys, numpy as np, tierflow as tf
w = tf.Worker(level=3, sub_workers=1)
@w.sub
def fill(args):
    args.tensor(0)[...] = args.scalar(0)
w.init()
pids = w.pids()
pid = os.fork()
if pid == 0:
    sys.exit(0)          # the child leaves the way any script does
os.waitpid(pid, 0)
x = w.zeros(4, np.int64)
w.submit_sub(fill, tf.TaskArgs().output(x).scalar(5))
w.drain(timeout=30)
assert np.all(x == 5) and w.pids() == pids, (x, w.pids(), pids)
w.close()
print("pool intact")
"""


@pytest.mark.timeout(60)
def test_a_script_whose_forked_child_exits_keeps_its_pool(tmp_path):
    import subprocess
    import sys
    script = tmp_path / "fork_child.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    assert "pool intact" in out.stdout


@pytest.mark.timeout(60)
def test_a_forked_child_that_exits_normally_leaves_the_pool_alone(w):
    pids = w.pids()
    assert _in_child(lambda: None) == 0
    # The pool still serves, with the same processes.
    x = w.zeros(4, np.int64)
    w.submit_sub(w.h["fill"], tf.TaskArgs().output(x).scalar(5))
    w.drain()
    assert np.all(x == 5)
    assert w.pids() == pids


@pytest.mark.timeout(60)
def test_every_worker_method_refuses_in_a_forked_child(w):
    x = w.zeros(4, np.int64)
    t = w.submit_sub(w.h["noop"])
    t.wait(timeout=30)

    def probe():
        calls = [lambda: w.alloc(4), lambda: w.submit_sub(w.h["noop"]), lambda: w.drain(),
                 lambda: w.stats(), lambda: w.pids(), lambda: w.scope().__enter__(), lambda: w.close(),
                 lambda: w.init()]
        for i, call in enumerate(calls):
            try:
                call()
            except tf.WorkerStateError as e:
                if i != 6 and "belongs to process" not in str(e):
                    raise AssertionError(f"call {i}: {e}")
                continue
            if i != 6:  # close() in a copy is a no-op, never a shutdown of the parent's pool
                raise AssertionError(f"call {i} did not refuse")

    assert _in_child(probe) == 0
    w.submit_sub(w.h["fill"], tf.TaskArgs().output(x).scalar(9))
    w.drain()
    assert np.all(x == 9)
