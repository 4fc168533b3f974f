"""What a forked tierflow process inherits (robustness).

Children and the fork server close every descriptor they do not need —
else a pipe the user hands to another program never reaches EOF — and drop
the shared mappings of other Workers; a closed Worker lets go of its arena
once no array needs it."""
import gc
import os
import select

import numpy as np
import pytest

import tierflow as tf

from conftest import wait_until


def fds_of(pid):
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def mapping_of(pid, address):
    """The /proc/<pid>/maps line covering `address`, or None."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line
    return None


def perms(line):
    return line.split()[1] if line else None


@pytest.mark.timeout(60)
def test_a_pipe_created_before_init_reaches_eof_when_the_parent_closes_it(worker_factory):
    r, wfd = os.pipe()
    try:
        w = worker_factory(sub_workers=2, chips=1)
        w.register_sub(lambda args: None)
        w.init()
        os.close(wfd)
        wfd = -1
        ready, _, _ = select.select([r], [], [], 10)
        assert ready, "no EOF: a tierflow process still holds the write end"
        assert os.read(r, 1) == b""
    finally:
        os.close(r)
        if wfd >= 0:
            os.close(wfd)


@pytest.mark.timeout(60)
def test_children_hold_only_stdio(worker_factory):
    extra = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]  # descriptors the user happens to have
    try:
        w = worker_factory(sub_workers=1, chips=1, output="inherit")
        w.register_sub(lambda args: None)
        w.init()
        for name, pid in w.pids().items():
            # (A child closes what it inherited first thing after the fork.)
            assert wait_until(lambda: fds_of(pid) <= {0, 1, 2}, timeout=10), f"{name} holds {fds_of(pid)}"
    finally:
        for fd in extra:
            os.close(fd)


@pytest.mark.timeout(60)
def test_children_do_not_map_another_workers_arena(worker_factory):
    w1 = worker_factory(sub_workers=1)
    w1.register_sub(lambda args: None)
    w1.init()
    a1 = w1.zeros(1 << 16, np.uint8)
    base1 = a1.__array_interface__["data"][0]
    w2 = worker_factory(sub_workers=1)
    w2.register_sub(lambda args: None)
    w2.init()
    own = w2.zeros(16, np.uint8)
    base2 = own.__array_interface__["data"][0]
    child = w2.pids()["sub 0"]
    assert "s" in perms(mapping_of(child, base2)), "a child must map its own Worker's arena shared"
    line = mapping_of(child, base1)
    assert line is None or perms(line) == "---p", f"w2's child still maps w1's arena: {line}"
    assert "s" in perms(mapping_of(w1.pids()["sub 0"], base1))


@pytest.mark.timeout(60)
def test_a_closed_worker_releases_its_arena_once_no_array_needs_it():
    w = tf.Worker(level=3, sub_workers=1, arena_bytes=1 << 24)
    w.register_sub(lambda args: None)
    w.init()
    x = w.zeros(1024, np.float64)
    base = x.__array_interface__["data"][0]
    w.close()
    assert mapping_of(os.getpid(), base) is not None, "an array still needs the mapping"
    x[:] = 1.0  # and it is still usable
    del x
    gc.collect()
    still_shared = lambda: "s" in (perms(mapping_of(os.getpid(), base)) or "")
    assert wait_until(lambda: not still_shared(), timeout=5), "the arena stayed mapped"
