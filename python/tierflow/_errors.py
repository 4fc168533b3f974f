"""Exceptions and failure records of tierflow's public API."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

from ._core import ArenaExhausted, WindowExhausted

__all__ = [
    "ArenaExhausted", "Failure", "InvalidWorkerIndex", "RemoteTraceback", "TaskError",
    "WindowExhausted", "WorkerClosed", "WorkerStateError",
]


class WorkerClosed(RuntimeError):
    """The Worker was closed; it accepts no more calls."""


class WorkerStateError(RuntimeError):
    """The call is not allowed in the Worker's current phase (e.g. registering after init())."""


class InvalidWorkerIndex(ValueError, IndexError):
    """A chip index outside 0..chips-1."""


class Failure(NamedTuple):
    """Why one task did not complete.

    kind is "exception" (the task raised), "worker_died" (its process died)
    or "dependency_failed" (a task it depends on failed; cause_task_id names
    the first failure).
    """

    task_id: int
    worker: Optional[str]
    kind: str
    message: str
    traceback: str
    cause_task_id: Optional[int]


class RemoteTraceback(Exception):
    """The traceback text of a task that failed in a child process."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


class TaskError(Exception):
    """One or more tasks failed; .failures lists every tf.Failure."""

    def __init__(self, failures: Sequence[Failure]):
        self.failures = list(failures)
        first = self.failures[0] if self.failures else None
        if first is None:
            msg = "task failed"
        else:
            where = f" on {first.worker}" if first.worker else ""
            msg = f"task {first.task_id} failed{where} ({first.kind}): {first.message}"
            if len(self.failures) > 1:
                msg += f" [and {len(self.failures) - 1} more failure(s); see .failures]"
        super().__init__(msg)

    @classmethod
    def raise_for(cls, failures: Sequence[Failure]) -> None:
        """Raises a TaskError for `failures`, chaining the first child traceback."""
        err = cls(failures)
        tb = next((f.traceback for f in err.failures if f.traceback), "")
        if tb:
            raise err from RemoteTraceback(tb)
        raise err
