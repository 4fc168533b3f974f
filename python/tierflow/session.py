"""tf.Session: one client of a Worker's shared pool.

    w = tf.Worker(level=3, chips=4, sub_workers=2)
    ... register ...
    w.init()
    with w.session("etl", weight=2) as s:      # any thread, any time after init()
        s.submit_sub(h, args)
        s.drain()                              # this session's tasks and failures only

A session has the submit methods, scopes, drain and run of a Worker, and its
own everything else: its ready queue (served in weighted round robin with
the others), its share of the window, its WindowExhausted check, its failure
reports, its cancellation (Ctrl-C in its drain cancels only its tasks). All
sessions share the Worker's processes, arena and dependency tracking:
dependencies across sessions follow the order in which submits reach the
Worker. The Worker's own submit_*/drain are its default session.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ._errors import WorkerClosed
from .orchestrator import Orchestrator


class Session(Orchestrator):
    """A client of a Worker (see the module docstring). Made by
    ``w.session(name, weight=1)``; also a context manager (leaving the block
    closes it, cancelling its pending work if the block raised)."""

    def __init__(self, worker: Any, core: Any, name: str, weight: int):
        super().__init__(worker)
        self._core = core
        self.name = name
        self.weight = weight
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tf.Session {self.name!r} weight={self.weight} of {self._worker.name} {state}>"

    def _check_session(self) -> None:
        if self._closed:
            raise WorkerClosed(f"session {self.name!r} is closed")

    def stats(self) -> Dict[str, Any]:
        """This session's counters: submitted, completed, failed,
        outstanding, queue_depth, running (a count), busy_seconds ({worker:
        seconds}), busy_total, weight."""
        self._worker._live_session(self)
        return self._core.stats()

    def close(self, cancel: bool = False) -> None:
        """Waits for this session's tasks (with cancel=True: cancels what has
        not started and stops what runs after a short grace), ends its open
        scopes and frees its place in the Worker. Idempotent; afterwards every
        method raises tf.WorkerClosed naming the session. Its Tasks stay
        queryable."""
        if self._closed:
            return
        if self is self._worker._default_session:
            raise ValueError("the default session closes with its Worker: call w.close()")
        self._closed = True
        core, self._core = self._core, None
        self._worker._forget_session(self)
        if core is not None:
            core.close(bool(cancel), 0.5)
        import logging
        logging.getLogger("tierflow").debug("%s: session %r closed", self._worker.name, self.name)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self is not self._worker._default_session:
            self.close(cancel=exc_type is not None)


def check_session_args(name: Any, weight: Any) -> None:
    import numpy as np
    if not isinstance(name, str) or not name:
        raise TypeError(f"a session name must be a non-empty str, got {name!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, np.integer)):
        raise TypeError(f"weight must be an int, got {type(weight).__name__}")
    if not 1 <= weight <= 1_000_000:
        raise ValueError(f"weight must be between 1 and 1,000,000, got {weight}")


__all__ = ["Session"]
