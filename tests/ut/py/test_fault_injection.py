"""Fault injection: children are SIGKILLed at random moments (or crash in
native code) while a 3,000-task DAG runs. Every run ends; the failed set is
exactly the killed tasks plus their dependents (none with retries); every
other tensor equals the sequential result; the pool is back to full size."""
import ctypes
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

import tierflow as tf

BUFFERS, LENGTH, TASKS = 6, 48, 3000


def make_program(rng):
    prog = []
    for _ in range(TASKS):
        touched = []
        for _ in range(rng.randint(1, 3)):
            b = rng.randrange(BUFFERS)
            lo = rng.randrange(LENGTH - 1)
            hi = rng.randint(lo + 1, LENGTH)
            touched.append((b, lo, hi, rng.choice(["input", "output", "inout"])))
        prog.append((touched, rng.choice(["sub", "chip"]), rng.random() < 0.002))
    return prog


def apply(views, tags, k):
    """The task body: order-sensitive so any reordering shows."""
    total = sum(int(v.sum()) for v, t in zip(views, tags) if t != "output") % 1000003
    for v, t in zip(views, tags):
        if t == "output":
            v[...] = k + total
        elif t == "inout":
            v[...] = (v * 3 + k + total) % 1000003


def sequential(prog, skip):
    bufs = [np.arange(LENGTH, dtype=np.int64) + 100 * b for b in range(BUFFERS)]
    for k, (touched, _, _) in enumerate(prog):
        if k in skip:
            continue
        apply([bufs[b][lo:hi] for b, lo, hi, _ in touched], [t for *_, t in touched], k)
    return bufs


def body(args):
    n = args.num_tensors
    apply([args.tensor(i) for i in range(n)], [str(args.tag(i)).split(".")[-1].lower() for i in range(n)],
          args.scalar(0))
    if args.scalar(1):
        ctypes.string_at(0)  # segfault in native code


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    # The children's crash reports (faulthandler dumps of the injected
    # segfaults) go to log files, not into the test output.
    logs = tmp_path_factory.mktemp("fault-injection-logs")
    w = tf.Worker(level=3, chips=2, sub_workers=2, window=64, output=str(logs))
    sub = w.register_sub(body)
    kern = w.register_kernel(lambda args, chip: body(args))
    w.init()
    w.h = {"sub": sub, "chip": kern}
    yield w
    w.close()


def run_once(w, prog, retries, kill_seed):
    bufs = [w.share(np.arange(LENGTH, dtype=np.int64) + 100 * b) for b in range(BUFFERS)]
    ids = {}
    stop = threading.Event()
    kills = []

    def killer():
        r = random.Random(kill_seed)
        while not stop.wait(r.uniform(0.002, 0.02)):
            name, pid = r.choice(sorted(w.pids().items()))
            try:
                os.kill(pid, signal.SIGKILL)
                kills.append(name)
            except ProcessLookupError:
                pass
            return  # one kill per run (None: no kill)

    th = threading.Thread(target=killer)
    if kill_seed is not None:
        th.start()
    try:
        for k, (touched, kind, segv) in enumerate(prog):
            a = tf.TaskArgs()
            for b, lo, hi, tag in touched:
                getattr(a, tag)(bufs[b][lo:hi])
            a.scalar(k).scalar(int(segv))
            if kind == "sub":
                t = w.submit_sub(w.h["sub"], a, retries=retries)
            else:
                t = w.submit_next_level(w.h["chip"], a, retries=retries)
            ids[t.id] = k
        failures = []
        # The kill lands while the DAG runs (within 20 ms of its first
        # submit), however fast this machine finishes the program.
        if th.is_alive():
            th.join()
        try:
            w.drain(timeout=120)
        except tf.TaskError as e:
            failures = e.failures
    finally:
        stop.set()
        if th.is_alive():
            th.join()
    return bufs, ids, failures, len(kills)


@pytest.mark.timeout(300)
def test_without_faults_every_buffer_is_sequential(worker):
    rng = random.Random(99)
    for run in range(5):
        prog = [(t, kind, False) for t, kind, _ in make_program(rng)]
        bufs, ids, failures, _ = run_once(worker, prog, 0, kill_seed=None)
        assert failures == []
        expected = sequential(prog, set())
        for b in range(BUFFERS):
            np.testing.assert_array_equal(bufs[b], expected[b], err_msg=f"run {run} buffer {b}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("retries", [0, 3])
def test_random_kills_during_a_dag(worker, retries):
    rng = random.Random(1234 + retries)
    total_kills = 0
    restarts_before = worker.stats()["restarts"]
    for run in range(20):
        prog = make_program(rng)
        bufs, ids, failures, kills = run_once(worker, prog, retries, kill_seed=run)
        total_kills += kills
        by_id = {f.task_id: f for f in failures}
        roots = {i for i, f in by_id.items() if f.kind in ("worker_died", "exception")}
        segv = {k for k, (_, _, s) in enumerate(prog) if s}
        for i, f in by_id.items():
            assert f.kind in ("worker_died", "dependency_failed"), f
            if f.kind == "dependency_failed":
                assert f.cause_task_id in roots, f
            else:
                assert ("SIGKILL" in f.message or "SIGSEGV" in f.message), f
        if retries:
            # Only a task that crashes on every attempt (native segfault) may fail.
            assert {ids[i] for i in roots} <= segv
        skip = {ids[i] for i in by_id}
        expected = sequential(prog, skip)
        # A task killed midway may have written part of its outputs; those
        # bytes are undefined, and every later task touching them failed too.
        undefined = [np.zeros(LENGTH, bool) for _ in range(BUFFERS)]
        for k in skip:
            for b, lo, hi, tag in prog[k][0]:
                if tag != "input":
                    undefined[b][lo:hi] = True
        for b in range(BUFFERS):
            np.testing.assert_array_equal(bufs[b][~undefined[b]], expected[b][~undefined[b]],
                                          err_msg=f"run {run} buffer {b}")
        deadline = time.monotonic() + 10
        while not all(worker.stats()["alive"].values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(worker.stats()["alive"].values()), worker.stats()["alive"]
        assert len(worker.pids()) == 4
    # The faults really happened and every dead child was replaced.
    assert total_kills >= 15
    assert worker.stats()["restarts"] - restarts_before >= total_kills
