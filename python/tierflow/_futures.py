"""Waiting on many tasks: tf.wait, tf.as_completed, and the callback
threads behind Task.add_done_callback.

Callbacks are delivered per session by one thread that lives only while
some callback is pending: it sleeps in the engine (GIL released) until a
watched task finishes, runs that task's callbacks, and exits when none is
left.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Set, Tuple

log = logging.getLogger("tierflow")

FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"
ALL_COMPLETED = "ALL_COMPLETED"


class DoneAndNotDoneTasks(NamedTuple):
    done: Set
    not_done: Set


def _call(fn: Callable, task) -> None:
    try:
        fn(task)
    except Exception:  # a callback's failure is the callback's, not the task's
        log.exception("tierflow: a done callback of task %d raised", task.id)


class _Dispatcher:
    def __init__(self, key: int):
        self.key = key
        self.pending: Dict[int, Tuple[object, List[Callable]]] = {}
        self.thread: Optional[threading.Thread] = None


_lock = threading.Lock()
_dispatchers: Dict[int, _Dispatcher] = {}


def add_done_callback(task, fn: Callable) -> None:
    session = task._session
    with _lock:
        d = _dispatchers.get(session.key)
        entry = d.pending.get(task.id) if d is not None else None
        if entry is not None:
            entry[1].append(fn)
            return
        if task._watch():
            if d is None:
                d = _dispatchers[session.key] = _Dispatcher(session.key)
            d.pending[task.id] = (task, [fn])
            if d.thread is None:
                d.thread = threading.Thread(target=_deliver, args=(d, session), daemon=True,
                                            name=f"tierflow-callbacks-{session.key:x}")
                d.thread.start()
            return
    _call(fn, task)  # already finished


def _deliver(d: _Dispatcher, session) -> None:
    while True:
        with _lock:
            if not d.pending:  # nothing left to wait for: leave at once
                d.thread = None
                if _dispatchers.get(d.key) is d:
                    del _dispatchers[d.key]
                return
        ids = session.take_done(0.5)
        with _lock:
            ready = [d.pending.pop(i) for i in ids if i in d.pending]
        for task, fns in ready:
            for fn in fns:
                _call(fn, task)
        del ready


def _deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def as_completed(tasks: Iterable, timeout: Optional[float] = None) -> Iterator:
    """Yields the tasks as they finish (those already finished first);
    raises TimeoutError if some are still unfinished after `timeout` s."""
    deadline = _deadline(timeout)
    todo = set(tasks)
    finished: "queue.SimpleQueue" = queue.SimpleQueue()
    for t in list(todo):
        if t.done():
            todo.discard(t)
            yield t
    for t in todo:
        t.add_done_callback(finished.put)
    while todo:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"{len(todo)} (of the) task(s) did not finish within {timeout} s")
        try:
            t = finished.get(timeout=0.1 if left is None else min(left, 0.1))
        except queue.Empty:
            continue
        except KeyboardInterrupt:  # as in drain(): cancel what has not started
            from ._task import interrupted
            for session in {x._session.key: x._session for x in todo}.values():
                interrupted(session)
            raise
        if t in todo:
            todo.discard(t)
            yield t


def wait(tasks: Iterable, timeout: Optional[float] = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDoneTasks:
    """Waits until the tasks finish (ALL_COMPLETED), one finishes
    (FIRST_COMPLETED) or one fails (FIRST_EXCEPTION; then as ALL_COMPLETED if
    none fails); returns (done, not_done) sets. A timeout returns what is
    done so far, as concurrent.futures.wait does."""
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        raise ValueError(f"return_when must be tf.FIRST_COMPLETED, tf.FIRST_EXCEPTION or tf.ALL_COMPLETED, "
                         f"got {return_when!r}")
    tasks = set(tasks)
    done = {t for t in tasks if t.done()}

    def satisfied() -> bool:
        if return_when == FIRST_COMPLETED:
            return bool(done)
        if return_when == FIRST_EXCEPTION and any(t.state in ("failed", "cancelled") for t in done):
            return True
        return len(done) == len(tasks)

    if satisfied():
        return DoneAndNotDoneTasks(done, tasks - done)
    for t in as_completed(tasks - done, timeout=None) if timeout is None else _until(tasks - done, timeout):
        done.add(t)
        if satisfied():
            break
    return DoneAndNotDoneTasks(done, tasks - done)


def _until(tasks: Set, timeout: float) -> Iterator:
    try:
        yield from as_completed(tasks, timeout)
    except TimeoutError:
        return
