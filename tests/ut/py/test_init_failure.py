"""A failed init() leaves nothing behind (robustness, contract section 1):
values the engine cannot take are refused before anything is forked, and
a failure after the fork kills the fork server and its children."""
import os

import pytest

import tierflow as tf
from tierflow import _core

from conftest import children_of, wait_until


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kw, what", [
    (dict(window=2 ** 32), "window"),
    (dict(window=(1 << 20) + 1), "window"),
    (dict(chips=5000), "chips"),
    (dict(sub_workers=5000), "sub_workers"),
    (dict(arena_bytes=1 << 60), "arena_bytes"),
])
def test_values_beyond_what_the_engine_supports_are_refused_at_construction(kw, what):
    before = children_of(os.getpid())
    with pytest.raises(ValueError, match=f"{what}.*at most"):
        tf.Worker(level=3, **{"sub_workers": 1, **kw})
    assert children_of(os.getpid()) == before


@pytest.mark.timeout(60)
def test_a_failure_after_the_fork_kills_the_server_and_closes_every_descriptor(monkeypatch):
    real_engine = _core.Engine

    def failing_engine(*args, **kwargs):
        raise RuntimeError("engine construction failed (injected)")

    w = tf.Worker(level=3, sub_workers=2, chips=1)
    w.register_sub(lambda args: None)
    before_children, before_fds = children_of(os.getpid()), open_fds()
    monkeypatch.setattr(_core, "Engine", failing_engine)
    with pytest.raises(RuntimeError, match="injected"):
        w.init()
    monkeypatch.setattr(_core, "Engine", real_engine)
    assert wait_until(lambda: children_of(os.getpid()) <= before_children, timeout=5), "the fork server survived"
    assert open_fds() <= before_fds, f"descriptors leaked: {open_fds() - before_fds}"
    w.close()


@pytest.mark.timeout(60)
def test_an_engine_refusing_its_arguments_leaves_the_link_to_clean_up(monkeypatch):
    """The C++ Engine checks what it is given before it takes the fork
    server over; refused, it leaves the resources with the ForkServerLink,
    whose abandon() (run by init() on any exception) kills the server."""
    w = tf.Worker(level=3, sub_workers=2)
    w.register_sub(lambda args: None)
    before_children, before_fds = children_of(os.getpid()), open_fds()
    real_region = _core.SharedRegion
    # A control region with too few mailboxes for the children started.
    monkeypatch.setattr(_core, "SharedRegion", lambda mailboxes, barriers: real_region(1, barriers))
    with pytest.raises(ValueError, match="mailbox"):
        w.init()
    monkeypatch.setattr(_core, "SharedRegion", real_region)
    assert wait_until(lambda: children_of(os.getpid()) <= before_children, timeout=5)
    assert open_fds() <= before_fds, f"descriptors leaked: {open_fds() - before_fds}"
    w.close()
