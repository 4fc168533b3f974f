"""What a failure report carries (contract section 6): the text always
arrives (whatever bytes a task's exception holds), long reports keep what
matters (the exception line and the innermost frames), dependents carry
their root cause, and every record names its task."""
import sys

import pytest

import tierflow as tf


class Picklable(Exception):
    """Defined at module level: re-created in the parent from its pickle."""


class Unpicklable(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.handle = lambda: None  # a lambda does not pickle


@pytest.fixture
def w(worker_factory):
    w = worker_factory(sub_workers=2, chips=1)

    @w.sub
    def raise_text(args):
        raise ValueError(TEXTS[args.scalar(0)])

    @w.sub
    def raise_long(args):
        raise RuntimeError("x" * args.scalar(0) + " THE END")

    @w.sub
    def recurse(args):
        def down(n):
            if n == 0:
                raise LookupError("innermost frame reached")
            return down(n - 1) + 1
        down(args.scalar(0))

    @w.sub
    def raise_picklable(args):
        raise Picklable("keep me", 42)

    @w.sub
    def raise_unpicklable(args):
        raise Unpicklable("no pickle")

    @w.sub
    def copy(args):
        args.tensor(1)[...] = args.tensor(0)

    @w.sub
    def write_then_raise(args):
        args.tensor(0)[...] = 1
        raise KeyError("root cause here")

    w.init()
    w.h = dict(raise_text=raise_text, raise_long=raise_long, recurse=recurse, raise_picklable=raise_picklable,
               raise_unpicklable=raise_unpicklable, copy=copy, write_then_raise=write_then_raise)
    return w


TEXTS = [
    "é" * 40000,                       # 80 kB of 2-byte characters: cut somewhere mid-character
    "lone surrogate \udc80 in the message",
    "€" * 30000 + "🙂" * 1000,          # 3- and 4-byte characters past the mailbox size
    "tab\tnewline\nnul\x00 bell\x07",
]


def failure_of(task):
    err = task.exception(timeout=30)
    assert err is not None
    return err, err.failures[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_any_text_arrives_and_nothing_is_lost(w, i):
    t = w.submit_sub(w.h["raise_text"], tf.TaskArgs().scalar(i))
    err, f = failure_of(t)
    assert f.kind == "exception", "the report path must never turn an exception into a worker death"
    assert f.message.startswith("ValueError: ")
    assert isinstance(f.message, str) and isinstance(f.traceback, str)
    # Every drain, wait and close still works and reports the record.
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert [x.task_id for x in e.value.failures] == [t.id]
    assert w.stats()["restarts"] == 0


@pytest.mark.timeout(60)
def test_a_huge_message_keeps_the_exception_type_and_its_tail(w):
    t = w.submit_sub(w.h["raise_long"], tf.TaskArgs().scalar(100_000))
    err, f = failure_of(t)
    assert f.message.startswith("RuntimeError: xxx") and f.message.endswith("THE END")
    assert len(f.message) < 20_000
    assert "RuntimeError" in f.traceback and "THE END" in f.traceback
    assert "raise_long" in f.traceback, "the frame that raised is kept"
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_a_deep_recursion_keeps_the_innermost_frames_and_the_exception_line(w):
    t = w.submit_sub(w.h["recurse"], tf.TaskArgs().scalar(min(900, sys.getrecursionlimit() - 100)))
    err, f = failure_of(t)
    assert f.message == "LookupError: innermost frame reached"
    assert f.traceback.rstrip().endswith("LookupError: innermost frame reached")
    assert 'raise LookupError("innermost frame reached")' in f.traceback
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_the_original_exception_is_the_cause_when_it_pickles(w):
    err, f = failure_of(w.submit_sub(w.h["raise_picklable"]))
    cause = err.__cause__
    assert type(cause) is Picklable and cause.args == ("keep me", 42)
    assert isinstance(cause.__cause__, tf.RemoteTraceback) and "raise_picklable" in cause.__cause__.text
    err, f = failure_of(w.submit_sub(w.h["raise_unpicklable"]))
    assert isinstance(err.__cause__, tf.RemoteTraceback) and "no pickle" in err.__cause__.text
    with pytest.raises(tf.TaskError):
        w.drain()


@pytest.mark.timeout(60)
def test_a_dependent_carries_the_root_cause_message_and_traceback(w):
    a, b, c = w.alloc(4), w.alloc(4), w.alloc(4)
    root = w.submit_sub(w.h["write_then_raise"], tf.TaskArgs().output(a), name="load")
    mid = w.submit_sub(w.h["copy"], tf.TaskArgs().input(a).output(b), name="transform")
    leaf = w.submit_sub(w.h["copy"], tf.TaskArgs().input(b).output(c))
    _, froot = failure_of(root)
    for t, name in ((mid, "transform"), (leaf, "copy")):
        err, f = failure_of(t)
        assert f.kind == "dependency_failed" and f.cause_task_id == root.id
        assert f.name == name and f.attempts == 0
        assert "root cause here" in f.message and "load" in f.message
        assert f.traceback == froot.traceback
        assert type(err.__cause__) is KeyError and err.__cause__.args == ("root cause here",)
        assert "root cause here" in str(err)
    assert froot.name == "load" and froot.attempts == 1
    with pytest.raises(tf.TaskError) as e:
        w.drain()
    assert {f.task_id for f in e.value.failures} == {root.id, mid.id, leaf.id}
