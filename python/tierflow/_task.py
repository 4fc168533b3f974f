"""tf.Task: a future for one submitted task."""
from __future__ import annotations

from typing import Any, Optional

from ._errors import Failure, TaskError


class Task:
    """A submitted task. Like concurrent.futures.Future: done(), wait(),
    exception(); plus the engine's view of it in .state."""

    __slots__ = ("_worker", "_slot", "id")

    def __init__(self, worker: Any, slot: int, task_id: int):
        self._worker = worker
        self._slot = slot
        self.id = task_id

    def __repr__(self) -> str:
        try:
            state = self.state
        except Exception:  # closed worker
            state = "unknown"
        return f"<tf.Task {self.id} {state}>"

    @property
    def state(self) -> str:
        """"pending", "ready", "running", "completed", "failed" or "consumed"."""
        return self._worker._live_engine().state(self._slot, self.id)

    def done(self) -> bool:
        """True once the task completed or failed."""
        return self._worker._live_engine().done(self._slot, self.id)

    def _failure(self) -> Optional[Failure]:
        f = self._worker._live_engine().failure(self.id)
        return None if f is None else Failure(*f)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Blocks until the task finished; raises tf.TaskError if it failed and
        TimeoutError if it is still unfinished after `timeout` seconds."""
        engine = self._worker._live_engine()
        if not engine.wait_task(self._slot, self.id, timeout):
            raise TimeoutError(f"task {self.id} did not finish within {timeout} s (state: {self.state})")
        f = self._failure()
        if f is not None:
            TaskError.raise_for([f])

    def exception(self, timeout: Optional[float] = None) -> Optional[TaskError]:
        """Waits like wait(); returns the TaskError the task failed with, or None."""
        try:
            self.wait(timeout)
        except TaskError as e:
            return e
        return None
