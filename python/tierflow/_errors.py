"""Exceptions and failure records of tierflow's public API."""
from __future__ import annotations

import pickle
from typing import Dict, NamedTuple, Optional, Sequence

from ._core import ArenaExhausted, WindowExhausted, WorkerClosed

__all__ = [
    "ArenaExhausted", "Failure", "InvalidWorkerIndex", "NativeKernelError", "RemoteTraceback", "TaskError",
    "WindowExhausted", "WorkerClosed", "WorkerStateError",
]


# Raised by the engine itself too, when a submit reaches a closing session.
WorkerClosed.__doc__ = "The Worker (or session) was closed; it accepts no more calls."
WorkerClosed.__module__ = "tierflow"


class WorkerStateError(RuntimeError):
    """The call is not allowed in the Worker's current phase or process
    (registering after init(), using a Worker inside a task, ...)."""


class RemoteError(RuntimeError):
    """A remote level-3 daemon (add_remote) could not be used at init():
    unreachable, a refused token, other versions, too few chips. The
    message names the address and how to fix it."""

    __module__ = "tierflow"


class InvalidWorkerIndex(ValueError, IndexError):
    """A chip index outside 0..chips-1."""


class NativeKernelError(Exception):
    """A native (C) kernel returned a non-zero code; the message names it and
    the kernel's own error text."""

    __module__ = "tierflow"


class Failure(NamedTuple):
    """Why one task did not complete.

    kind is "exception" (the task raised), "worker_died" (its process died),
    "timeout" (it ran past its timeout= and its worker was killed),
    "cancelled" (cancel(), Ctrl-C, close(cancel=True), or a task it depends
    on was cancelled) or "dependency_failed" (it reads what a failed task
    should have written). For a dependent failure, cause_task_id names the
    root failure and message/traceback carry the root's. attempts counts the
    runs started (more than 1 when retries were used).
    """

    task_id: int
    worker: Optional[str]
    kind: str
    message: str
    traceback: str
    cause_task_id: Optional[int]
    name: str = ""
    attempts: int = 0


class RemoteTraceback(Exception):
    """The traceback text of a task that failed in a child process."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


def _describe(f: Failure) -> str:
    name = f" ({f.name})" if f.name else ""
    where = f" on {f.worker}" if f.worker else ""
    tries = f" after {f.attempts} attempts" if f.attempts > 1 else ""
    return f"task {f.task_id}{name} failed{where}{tries} ({f.kind}): {f.message}"


def _cause(f: Failure, pickled: Optional[bytes]) -> Optional[BaseException]:
    """The original exception object when it unpickles here, carrying the
    child's traceback as its own __cause__; else the traceback text."""
    remote = RemoteTraceback(f.traceback) if f.traceback else None
    if pickled:
        try:
            exc = pickle.loads(pickled)
        except Exception:  # its class may not exist here; the text remains
            exc = None
        if isinstance(exc, BaseException):
            exc.__cause__ = remote
            return exc
    # A native kernel's report (its own, or the root's that a dependent carries).
    if f.traceback.startswith("NativeKernelError:"):
        exc = NativeKernelError(f.traceback.strip().split("\n")[-1][len("NativeKernelError:"):].strip())
        exc.__cause__ = remote
        return exc
    return remote


class TaskError(Exception):
    """One or more tasks failed; .failures lists every tf.Failure.

    The first failure is in the message. ``__cause__`` is the root cause of
    that failure: the exception object the task raised (re-created from its
    pickle, its own ``__cause__`` holding the child's traceback text), or a
    RemoteTraceback with that text when the exception cannot be re-created.
    """

    def __init__(self, failures: Sequence[Failure]):
        self.failures = list(failures)
        first = self.failures[0] if self.failures else None
        msg = "task failed" if first is None else _describe(first)
        if len(self.failures) > 1:
            msg += f" [and {len(self.failures) - 1} more failure(s); see .failures]"
        super().__init__(msg)

    @classmethod
    def from_records(cls, records: Sequence[tuple]) -> "TaskError":
        """From the engine's failure tuples (a Failure plus the pickled exception)."""
        err = cls([Failure(*r[:8]) for r in records])
        pickled: Dict[int, Optional[bytes]] = {r[0]: r[8] for r in records}
        first = err.failures[0] if err.failures else None
        if first is not None:
            err.__cause__ = _cause(first, pickled.get(first.task_id))
        return err

    @classmethod
    def raise_for(cls, records: Sequence[tuple]) -> None:
        """Raises a TaskError for the engine's failure tuples, with its cause chained."""
        err = cls.from_records(records)
        raise err from err.__cause__
