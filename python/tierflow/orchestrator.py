"""tf.Orchestrator: the submitting side of a Worker.

It checks what the user passes (handle kinds and owners, chip indices, group
shapes) and hands well-formed requests to the C++ orchestrator, which builds
the graph on this thread.
"""
from __future__ import annotations

import contextlib
import operator
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np

from ._core import TaskArgs
from ._errors import InvalidWorkerIndex
from ._handles import KernelHandle, OrchHandle, SubHandle, _Handle
from ._task import Task

_SUB, _CHIP, _GROUP = 0, 1, 2


class Orchestrator:
    """Submits tasks to one Worker. The Worker's own submit_* methods are this
    class's, on its default Orchestrator; an orch function receives one."""

    def __init__(self, worker: Any):
        self._worker = worker

    # -- tensors --------------------------------------------------------
    def alloc(self, shape, dtype=np.float32) -> np.ndarray:
        return self._worker.alloc(shape, dtype)

    def share(self, array) -> np.ndarray:
        return self._worker.share(array)

    # -- checks ---------------------------------------------------------
    def _check_handle(self, handle: Any, expected: type, call: str) -> None:
        if not isinstance(handle, _Handle):
            raise TypeError(f"{call}() needs a tf.{expected.kind} (from w.register_"
                            f"{'sub' if expected is SubHandle else 'kernel'}), got {type(handle).__name__}")
        if not isinstance(handle, expected):
            raise TypeError(f"{call}() needs a tf.{expected.kind}, got a tf.{handle.kind}; "
                            f"register the function with the matching w.register_* method")
        if handle._owner is not self._worker:
            raise ValueError(f"{handle!r} belongs to another Worker; register the function on this Worker")

    @staticmethod
    def _check_args(args: Any, call: str) -> TaskArgs:
        if args is None:
            return TaskArgs()
        if not isinstance(args, TaskArgs):
            raise TypeError(f"{call}() takes a tf.TaskArgs, got {type(args).__name__}")
        return args

    def _chip_index(self, worker: Any, call: str) -> int:
        chips = self._worker._chips
        if isinstance(worker, bool) or not isinstance(worker, (int, np.integer)):
            try:
                worker = operator.index(worker)
            except TypeError:
                raise TypeError(f"{call}(): a chip index must be an int, got {type(worker).__name__}") from None
        worker = int(worker)
        if not 0 <= worker < chips:
            raise InvalidWorkerIndex(f"{call}(): chip index {worker} is out of range; this Worker has "
                                     f"{chips} chip(s), indices 0..{chips - 1}")
        return worker

    def _need_chips(self, call: str) -> None:
        if self._worker._chips == 0:
            raise ValueError(f"{call}() needs chips, but this Worker has chips=0; "
                             f"create it with tf.Worker(level=3, chips=N)")

    @staticmethod
    def _retries(retries: Any) -> int:
        if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        return int(retries)

    def _submit(self, kind: int, handle: _Handle, target: int, members: List[TaskArgs],
                chips: Sequence[int], retries: int) -> Task:
        engine = self._worker._submit_engine()
        slot, task_id = engine.submit(kind, handle.index, target, members, list(chips), retries)
        return Task(self._worker, slot, task_id)

    # -- submitting -----------------------------------------------------
    def submit_sub(self, handle: SubHandle, args: Optional[TaskArgs] = None, *, retries: int = 0) -> Task:
        """Runs handle's function on any idle sub-worker. A task whose worker
        dies is re-run up to `retries` times before it fails."""
        worker = self._worker
        # Fast path: the checks below, done with the cheapest tests Python has.
        if (type(handle) is SubHandle and handle._owner is worker and type(args) is TaskArgs and not retries
                and worker._engine is not None and worker._subs):
            slot, task_id = worker._engine.submit_one(_SUB, handle.index, -1, args)
            return Task(worker, slot, task_id)
        self._check_handle(handle, SubHandle, "submit_sub")
        args = self._check_args(args, "submit_sub")
        if self._worker._subs == 0:
            raise ValueError("submit_sub() needs sub-workers, but this Worker has sub_workers=0; "
                             "create it with tf.Worker(level=3, sub_workers=N)")
        return self._submit(_SUB, handle, -1, [args], (), self._retries(retries))

    def submit_next_level(self, handle: KernelHandle, args: Optional[TaskArgs] = None,
                          worker: Optional[int] = None, *, retries: int = 0) -> Task:
        """Runs a kernel on chip `worker`, or on any idle chip when worker is None."""
        if isinstance(handle, OrchHandle):
            raise TypeError("submit_next_level() on a level-3 Worker needs a tf.KernelHandle, got a "
                            "tf.OrchHandle; orch functions run on level-4 Workers")
        wk = self._worker
        if (type(handle) is KernelHandle and handle._owner is wk and type(args) is TaskArgs and not retries
                and worker is None and wk._engine is not None and wk._chips):
            slot, task_id = wk._engine.submit_one(_CHIP, handle.index, -1, args)
            return Task(wk, slot, task_id)
        self._check_handle(handle, KernelHandle, "submit_next_level")
        args = self._check_args(args, "submit_next_level")
        self._need_chips("submit_next_level")
        target = -1 if worker is None else self._chip_index(worker, "submit_next_level")
        return self._submit(_CHIP, handle, target, [args], (), self._retries(retries))

    def submit_group(self, handle: KernelHandle, args_list: Sequence[TaskArgs],
                     workers: Optional[Sequence[int]] = None, *, retries: int = 0) -> Task:
        """Runs one task on len(args_list) chips at once; member i gets args_list[i]."""
        self._check_handle(handle, KernelHandle, "submit_group")
        self._need_chips("submit_group")
        if isinstance(args_list, TaskArgs) or not isinstance(args_list, (list, tuple)):
            raise TypeError("submit_group() takes a list of tf.TaskArgs, one per member")
        members = [self._check_args(a, "submit_group") for a in args_list]
        n, chips = len(members), self._worker._chips
        if n == 0:
            raise ValueError("submit_group() needs at least one member")
        if n > chips:
            raise ValueError(f"submit_group(): {n} members need {n} chips, but this Worker has {chips}")
        picked: List[int] = []
        if workers is not None:
            workers = list(workers)
            if len(workers) != n:
                raise ValueError(f"submit_group(): {n} args for {len(workers)} workers; "
                                 f"pass one TaskArgs per worker")
            picked = [self._chip_index(w, "submit_group") for w in workers]
            if len(set(picked)) != n:
                raise ValueError(f"submit_group(): workers {picked} name a chip twice; each member needs its own chip")
        return self._submit(_GROUP, handle, -1, members, picked, self._retries(retries))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Tasks submitted inside are retired together when the scope ends.
        Never blocks."""
        engine = self._worker._submit_engine()
        engine.scope_begin()
        try:
            yield
        finally:
            engine.scope_end()

    def drain(self, timeout: Optional[float] = None) -> None:
        self._worker.drain(timeout)

    def run(self, fn: Callable, args: Any = None) -> None:
        fn(self, args)
        self.drain()
