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
    except FileNotFoundError:
        return False


@pytest.fixture
def make_worker(worker_factory):
    """The same as worker_factory (the name the older test files use)."""
    return worker_factory


# ---------------------------------------------------------------------------
# Helpers and fixtures shared by the behaviour files (test_lifecycle.py,
# test_alloc.py, test_dependencies.py, ...).

def children_of(pid: int) -> set:
    """Pids of the live (non-zombie) direct children of `pid`, from /proc."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.add(int(name))
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
