"""tf.Orchestrator: the submitting side of a Worker.

It checks what the user passes (handle kinds and owners, chip indices,
group shapes, submit options) and hands well-formed requests to the C++
session, which builds the graph on this thread. The Worker's own submit_*
and scope() are those of its default session's Orchestrator; an orch
function (level >= 4) receives one.
"""
from __future__ import annotations

import contextlib
import math
import operator
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from ._core import TaskArgs
from ._errors import InvalidWorkerIndex
from . import _progress
from ._handles import KernelHandle, OrchHandle, SubHandle, _Handle
from ._task import Task, interrupted

_SUB, _CHIP, _GROUP = 0, 1, 2


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def retry_names(retry_on: Any) -> Optional[List[str]]:
    """retry_on= as the class names the engine matches a failure's MRO against."""
    if retry_on is True:
        return [_class_name(Exception)]
    if retry_on is False or retry_on is None or retry_on == ():
        return None
    classes = retry_on if isinstance(retry_on, (tuple, list)) else (retry_on,)
    for c in classes:
        if not (isinstance(c, type) and issubclass(c, BaseException)):
            raise TypeError(f"retry_on takes exception classes (or True for any Exception), got {c!r}")
    return [_class_name(c) for c in classes]


def check_options(name: Any, retries: Any, retry_on: Any, timeout: Any):
    """Validates the keyword options every submit takes; returns them in the
    engine's terms (name, retries, retry_on names, timeout)."""
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    names = retry_names(retry_on)
    if names and not retries:
        raise ValueError("retry_on= needs retries=N (N >= 1): exceptions are retried within the same budget "
                         "as worker deaths")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.integer, np.floating)):
            raise TypeError(f"timeout must be a number of seconds or None, got {type(timeout).__name__}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        if math.isinf(timeout):
            timeout = None
    return name or "", int(retries), names, timeout


class Orchestrator:
    """Submits tasks to one session of a Worker (the Worker's own submit_*
    methods are its default Orchestrator's).

    Every submit takes the keyword options ``name`` (shown in failures and
    in the Task's repr; default the callable's name), ``retries`` (re-runs after the
    worker died, or after an exception listed in ``retry_on``), ``retry_on``
    (exception classes to retry, or True for any Exception) and ``timeout``
    (seconds of running time; past it the worker is killed and replaced and
    the task fails as "timeout").
    """

    def __init__(self, worker: Any):
        self._worker = worker
        self._core = None  # the C++ session while the Worker runs in this process

    # -- tensors --------------------------------------------------------
    def alloc(self, shape, dtype=np.float32) -> np.ndarray:
        """An uninitialised array in the Worker's shared arena (see Worker.alloc)."""
        return self._worker.alloc(shape, dtype)

    def share(self, array) -> np.ndarray:
        """A copy of `array` in the Worker's shared arena (see Worker.share)."""
        return self._worker.share(array)

    # -- checks ---------------------------------------------------------
    def _check_handle(self, handle: Any, expected: type, call: str) -> None:
        register = {SubHandle: "sub", KernelHandle: "kernel", OrchHandle: "orch"}[expected]
        if not isinstance(handle, _Handle):
            raise TypeError(f"{call}() needs a tf.{expected.kind} (from w.register_{register}), "
                            f"got {type(handle).__name__}")
        if not isinstance(handle, expected):
            level = self._worker.level
            if expected is OrchHandle and isinstance(handle, KernelHandle):
                raise TypeError(f"{call}() on a level-{level} Worker needs a tf.OrchHandle, got a tf.KernelHandle: "
                                f"its next level is level-{level - 1} Workers, which run orch functions "
                                f"(w.register_orch); kernels run on chips, submitted by an orch function")
            if expected is KernelHandle and isinstance(handle, OrchHandle):
                raise TypeError(f"{call}() on a level-3 Worker needs a tf.KernelHandle, got a tf.OrchHandle; "
                                f"orch functions run on level-4 Workers")
            raise TypeError(f"{call}() needs a tf.{expected.kind}, got a tf.{handle.kind}; "
                            f"register the function with the matching w.register_* method")
        if handle._owner is not self._worker and not self._worker._knows_sibling_handle(handle):
            raise ValueError(f"{handle!r} belongs to another Worker; register the function on this Worker")

    @staticmethod
    def _check_args(args: Any, call: str) -> TaskArgs:
        if args is None:
            return TaskArgs()
        if not isinstance(args, TaskArgs):
            raise TypeError(f"{call}() takes a tf.TaskArgs, got {type(args).__name__}")
        return args

    def _chip_index(self, worker: Any, call: str) -> int:
        chips, what = self._worker._chips, self._worker._next_what
        if isinstance(worker, (bool, np.bool_)):
            raise TypeError(f"{call}(): a {what} index must be an int, got {worker!r} (a bool)")
        if not isinstance(worker, (int, np.integer)):
            try:
                worker = operator.index(worker)
            except TypeError:
                raise TypeError(f"{call}(): a {what} index must be an int, got {type(worker).__name__}") from None
        worker = int(worker)
        if not 0 <= worker < chips:
            raise InvalidWorkerIndex(f"{call}(): {what} index {worker} is out of range; this Worker has "
                                     f"{chips} {what}(s), indices 0..{chips - 1}")
        return worker

    def _need_chips(self, call: str) -> None:
        if self._worker._chips == 0:
            if self._worker.level >= 4:
                raise ValueError(f"{call}() needs level-{self._worker.level - 1} Workers, but none was added; "
                                 f"add one with w.add_worker(tf.Worker(level={self._worker.level - 1}, ...)) "
                                 f"before init()")
            raise ValueError(f"{call}() needs chips, but this Worker has chips=0; "
                             f"create it with tf.Worker(level=3, chips=N)")

    def _submit(self, kind: int, handle: _Handle, target: int, members: List[TaskArgs], chips: Sequence[int],
                options) -> Task:
        name, retries, retry_on, timeout = check_options(*options)
        session = self._worker._submit_session(self)
        try:
            return session.submit(kind, handle.index, target, members, list(chips), name, retries, retry_on,
                                  timeout)
        except KeyboardInterrupt:  # blocked on a full window
            interrupted(session)
            raise

    # -- submitting -----------------------------------------------------
    def submit_sub(self, handle: SubHandle, args: Optional[TaskArgs] = None, *, name: Optional[str] = None,
                   retries: int = 0, retry_on: Any = (), timeout: Optional[float] = None) -> Task:
        """Runs the sub-worker function `handle` with `args` on any idle
        sub-worker; returns its tf.Task at once. See the class docstring for
        the options."""
        core = self._core
        # Fast path: the checks below, done with the cheapest tests Python has.
        if (core is not None and type(handle) is SubHandle and handle._owner is self._worker
                and type(args) is TaskArgs and name is None and not retries and not retry_on and timeout is None
                and self._worker._subs):
            try:
                return core.submit_one(_SUB, handle.index, -1, args)
            except KeyboardInterrupt:  # blocked on a full window
                interrupted(core)
                raise
        self._check_handle(handle, SubHandle, "submit_sub")
        args = self._check_args(args, "submit_sub")
        if self._worker._subs == 0:
            raise ValueError("submit_sub() needs sub-workers, but this Worker has sub_workers=0; "
                             "create it with tf.Worker(level=3, sub_workers=N)")
        return self._submit(_SUB, handle, -1, [args], (), (name, retries, retry_on, timeout))

    def submit_next_level(self, handle: KernelHandle, args: Optional[TaskArgs] = None, worker: Optional[int] = None,
                          *, name: Optional[str] = None, retries: int = 0, retry_on: Any = (),
                          timeout: Optional[float] = None) -> Task:
        """Runs `handle` with `args` on next-level worker `worker`, or on any
        idle one when worker is None; returns its tf.Task at once. On a
        level-3 Worker the next level is its chips and `handle` a kernel; on
        a level-N Worker (N >= 4) it is its level-(N-1) Workers and `handle`
        an orch function, called as fn(orch, args) there."""
        core = self._core
        wk = self._worker
        if (core is not None and type(handle) is wk._next_handle and handle._owner is wk and type(args) is TaskArgs
                and worker is None and name is None and not retries and not retry_on and timeout is None
                and wk._chips):
            try:
                return core.submit_one(_CHIP, handle.index, -1, args)
            except KeyboardInterrupt:  # blocked on a full window
                interrupted(core)
                raise
        self._check_handle(handle, wk._next_handle, "submit_next_level")
        args = self._check_args(args, "submit_next_level")
        self._need_chips("submit_next_level")
        target = -1 if worker is None else self._chip_index(worker, "submit_next_level")
        return self._submit(_CHIP, handle, target, [args], (), (name, retries, retry_on, timeout))

    def submit_group(self, handle: KernelHandle, args_list: Sequence[TaskArgs], workers: Optional[Sequence[int]] = None,
                     *, name: Optional[str] = None, retries: int = 0, retry_on: Any = (),
                     timeout: Optional[float] = None) -> Task:
        """Runs one task on len(args_list) chips at once: member i gets
        args_list[i] (on chip workers[i] if given). The members may meet at
        chip.barrier(); the task completes when every member has finished."""
        self._check_handle(handle, self._worker._next_handle, "submit_group")
        self._need_chips("submit_group")
        if isinstance(args_list, TaskArgs) or not isinstance(args_list, (list, tuple)):
            raise TypeError("submit_group() takes a list of tf.TaskArgs, one per member")
        members = [self._check_args(a, "submit_group") for a in args_list]
        n, chips = len(members), self._worker._chips
        if n == 0:
            raise ValueError("submit_group() needs at least one member")
        what = self._worker._next_what
        if n > chips:
            raise ValueError(f"submit_group(): {n} members need {n} {what}s, but this Worker has {chips}")
        picked: List[int] = []
        if workers is not None:
            workers = list(workers)
            if len(workers) != n:
                raise ValueError(f"submit_group(): {n} args for {len(workers)} workers; "
                                 f"pass one TaskArgs per worker")
            picked = [self._chip_index(w, "submit_group") for w in workers]
            if len(set(picked)) != n:
                raise ValueError(f"submit_group(): workers {picked} name a {what} twice; each member needs its "
                                 f"own {what}")
        return self._submit(_GROUP, handle, -1, members, picked, (name, retries, retry_on, timeout))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Tasks submitted inside are retired together when the block ends
        (see the Worker's scope() for when to use it). Never blocks."""
        session = self._worker._submit_session(self)
        session.scope_begin()
        try:
            yield
        finally:
            session.scope_end()

    def drain(self, timeout: Optional[float] = None, *, progress: bool = False, dump_stacks: bool = False) -> None:
        """Waits for everything submitted so far; raises tf.TaskError for
        the failures no earlier drain reported, TimeoutError after `timeout`
        seconds (naming what still runs). Ctrl-C cancels what has not
        started and stops what runs. progress=True shows a progress bar on
        stderr (done / submitted, rate, failures) once the drain has lasted
        half a second, if stderr is a terminal. dump_stacks=True: on a
        timeout, every child first prints its Python stacks (dump_stacks())."""
        session = self._worker._live_session(self)
        try:
            if _progress.wanted(progress):
                finished = _progress.drain(session, timeout, f"{self._worker.name} {self._label()}")
            else:
                finished = session.drain(timeout)
        except KeyboardInterrupt:
            interrupted(session)
            raise
        if not finished:
            if dump_stacks:
                self._worker.dump_stacks()
            raise TimeoutError(self._worker._timeout_report(timeout, getattr(self, "name", None) or "default"))
        failures = session.take_failures()
        if failures:
            from ._errors import TaskError
            TaskError.raise_for(failures)

    def run(self, fn: Callable, args: Any = None, *, progress: bool = False) -> None:
        """Calls fn(orch, args) with this Orchestrator, then drain()."""
        fn(self, args)
        self.drain(progress=progress)

    def _label(self) -> str:
        name = getattr(self, "name", None)
        return f"session {name}" if name and name != "default" else "drain"
