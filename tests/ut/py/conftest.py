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
def make_worker():
    """make_worker(**kw) -> an un-initialised tf.Worker, closed at teardown;
    after closing, none of its children may be running."""
    made = []

    def make(**kw):
        kw.setdefault("level", 3)
        w = tf.Worker(**kw)
        made.append(w)
        return w

    yield make
    for w in made:
        pids = []
        try:
            pids = list(w.pids().values())
        except (tf.WorkerClosed, tf.WorkerStateError):
            pass
        w.close()
        assert [p for p in pids if process_running(p)] == [], "children survived close()"
