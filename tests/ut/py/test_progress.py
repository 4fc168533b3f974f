"""drain(progress=True) shows a progress bar on stderr for a long drain —
done / submitted, the rate, the failures — and nothing at all when stderr
is not a terminal or the drain is short."""
import io
import sys
import time

import pytest

import tierflow as tf


def nap(args):
    time.sleep(args.scalar(0))


def fail(args):
    raise ValueError("no")


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    """Call it in the test body: pytest puts its own sys.stderr back between
    a fixture's setup and the test."""
    def attach():
        t = Terminal()
        monkeypatch.setattr(sys, "stderr", t)
        return t
    return attach


def test_a_long_drain_shows_its_progress(make_worker, terminal):
    terminal = terminal()
    w = make_worker(sub_workers=2)
    h = w.register_sub(nap)
    w.init()
    for _ in range(40):
        w.submit_sub(h, tf.TaskArgs().scalar(0.04))
    w.drain(progress=True)
    out = terminal.getvalue()
    assert w.name in out and "40/40" in out and "task/s" in out and "failed=0" in out


def test_a_sessions_bar_names_it_and_counts_its_failures(make_worker, terminal):
    terminal = terminal()
    w = make_worker(sub_workers=2)
    h, bad = w.register_sub(nap), w.register_sub(fail)
    w.init()
    with w.session("etl") as s:
        for _ in range(30):
            s.submit_sub(h, tf.TaskArgs().scalar(0.04))
        s.submit_sub(bad, None)
        with pytest.raises(tf.TaskError):
            s.drain(progress=True)
    out = terminal.getvalue()
    assert "session etl" in out and "31/31" in out and "failed=1" in out


def test_no_bar_without_a_terminal_or_for_a_short_drain(make_worker, monkeypatch, terminal):
    terminal = terminal()
    w = make_worker(sub_workers=1)
    h = w.register_sub(nap)
    w.init()
    w.submit_sub(h, tf.TaskArgs().scalar(0.0))
    w.drain(progress=True)  # short: done before the bar would appear
    assert terminal.getvalue() == ""
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    for _ in range(20):
        w.submit_sub(h, tf.TaskArgs().scalar(0.05))
    w.run(lambda o, a: None, progress=True)
    assert plain.getvalue() == ""
