"""tf.Task: the future of one submitted task.

It behaves like a concurrent.futures.Future: done(), running(), cancelled(),
cancel(), wait(), result(), exception(), add_done_callback(). The C++ half
(_core.TaskBase) holds the task's identity and asks the engine; it keeps the
engine's records alive, so a Task stays queryable after its Worker closed.
"""
from __future__ import annotations

import pickle
import threading
from typing import Any, Callable, Optional

from . import _core
from ._errors import TaskError

_result_lock = threading.Lock()

INTERRUPT_GRACE_S = 0.5  # running tasks get this long after Ctrl-C before they are stopped


def interrupted(session: "_core.Session") -> None:
    """Ctrl-C arrived while waiting on `session`: cancel what has not
    started, stop what still runs after a short grace."""
    session.cancel_pending("interrupted by KeyboardInterrupt", INTERRUPT_GRACE_S)


class Task(_core.TaskBase):
    """A submitted task: a future for its outcome.

    ``id`` and ``name`` identify it; ``state`` is one of "pending", "ready",
    "running", "completed", "failed", "cancelled", "consumed" (retired
    after completing; a failed or cancelled task keeps saying so).
    """

    __slots__ = ("_value",)

    def __repr__(self) -> str:
        return f"<tf.Task {self.id} {self.name} {self.state}>"

    def wait(self, timeout: Optional[float] = None) -> None:
        """Blocks until the task finished. Raises tf.TaskError if it failed
        (or was cancelled) and TimeoutError if it is still unfinished after
        `timeout` seconds. Ctrl-C while waiting cancels the tasks of this
        session that have not started and stops the running ones."""
        try:
            finished = self._wait(timeout)
        except KeyboardInterrupt:
            interrupted(self._session)
            raise
        if not finished:
            raise TimeoutError(f"task {self.id} ({self.name}) did not finish within {timeout} s "
                               f"(state: {self.state})")
        failure = self._failure()
        if failure is not None:
            TaskError.raise_for([failure])

    def result(self, timeout: Optional[float] = None) -> Any:
        """The value the callable returned (None by default); raises like
        wait(). Every call returns the same object."""
        self.wait(timeout)
        with _result_lock:
            try:
                return self._value
            except AttributeError:
                data = self._take_value()
                self._value = None if data is None else pickle.loads(data)
                return self._value

    def exception(self, timeout: Optional[float] = None) -> Optional[TaskError]:
        """Waits like wait(); returns the tf.TaskError the task failed with
        (its __cause__ is the original exception), or None."""
        try:
            self.wait(timeout)
        except TaskError as e:
            return e
        return None

    def cancel(self) -> bool:
        """Cancels the task if it has not started: it then fails as
        "cancelled", and so do the tasks that read what it would have
        written. Returns True if the task is cancelled, False if it is
        already running or finished."""
        if self.cancelled():
            return True
        return self._cancel()

    def add_done_callback(self, fn: Callable[["Task"], Any]) -> None:
        """Calls fn(task) once the task finished: at once (in this thread)
        if it already has, else in a tierflow callback thread. Exceptions
        fn raises are logged and ignored, as in concurrent.futures."""
        from ._futures import add_done_callback
        add_done_callback(self, fn)


_core.set_task_type(Task)
