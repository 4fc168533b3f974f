"""tf.Worker: one level of the hierarchy and the lifecycle of its processes.

    new --init()--> running --close()--> closed
     |                                     ^
     +------------- close() ---------------+

Python decides *when* (registration, fork ordering, shutdown); the C++ engine
decides *how fast*. A level-3 Worker owns `chips` chip processes and
`sub_workers` Python sub-worker processes, forked in init() before any
engine thread starts.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import _core
from ._errors import Failure, TaskError, WorkerClosed, WorkerStateError
from ._handles import KernelHandle, OrchHandle, SubHandle
from . import _forkserver
from .orchestrator import Orchestrator

log = logging.getLogger("tierflow")

_live_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for w in list(_live_workers):
        try:
            w._close(cancel=True)
        except Exception:  # interpreter is exiting; report, keep going
            log.exception("tierflow: closing a Worker at exit failed")


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class Worker:
    """The engine of one level. See tierflow's API.md section 1."""

    def __init__(self, level: int = 3, *, chips: int = 0, sub_workers: int = 0, window: int = 1024,
                 arena_bytes: int = 1 << 30, output: str = "prefix", trace: Optional[str] = None,
                 name: Optional[str] = None):
        level = _count("level", level, 3)
        if level >= 4:
            raise NotImplementedError("level >= 4 Workers (add_worker/add_remote) are not available in this "
                                      "version of tierflow; use tf.Worker(level=3, ...)")
        if trace is not None:
            raise NotImplementedError("trace= is not available in this version of tierflow")
        self.level = level
        self.name = name or f"worker-{id(self):x}"
        self._chips = _count("chips", chips, 0)
        self._subs = _count("sub_workers", sub_workers, 0)
        self._window = _count("window", window, 1)
        self._arena_bytes = _count("arena_bytes", arena_bytes, 1)
        if not isinstance(output, (str, os.PathLike)):
            raise TypeError(f"output must be 'prefix', 'inherit' or a directory path, got {type(output).__name__}")
        output = os.fspath(output)
        if output not in ("prefix", "inherit") and os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"output={output!r} is neither 'prefix', 'inherit' nor a directory")
        self._output = output
        self._state = "new"
        # True once `with` started the children: then a registration that
        # comes before any work re-forks them (see _refork_for_registration).
        self._implicit_init = False
        self._used = False  # a task was submitted or a scope opened
        self._lock = threading.RLock()
        self._sub_fns: List[Callable] = []
        self._kernel_fns: List[Callable] = []
        self._orch_fns: List[Callable] = []
        self._arena: Optional[_core.Arena] = None
        self._engine: Optional[_core.Engine] = None
        self._fds: List[int] = []
        self._orch = Orchestrator(self)
        # The hot submit calls go straight to the default Orchestrator.
        self.submit_sub = self._orch.submit_sub
        self.submit_next_level = self._orch.submit_next_level

    def __repr__(self) -> str:
        return (f"<tf.Worker {self.name} level={self.level} chips={self._chips} "
                f"sub_workers={self._subs} {self._state}>")

    # -- phase checks ---------------------------------------------------
    def _check_open(self) -> None:
        if self._state == "closed":
            raise WorkerClosed(f"{self.name} is closed")

    def _check_new(self, what: str) -> None:
        self._check_open()
        if self._state != "new":
            raise WorkerStateError(f"{what} must happen before init(): the children are already forked "
                                   f"and cannot learn new functions")

    def _live_engine(self) -> "_core.Engine":
        self._check_open()
        if self._engine is None:
            if self._implicit_init:  # `with` started us; a late registration stopped the children
                self.init()
            else:
                raise WorkerStateError(f"{self.name} is not started; call w.init() or use "
                                       f"`with tf.Worker(...) as w:`")
        return self._engine

    def _submit_engine(self) -> "_core.Engine":
        engine = self._live_engine()
        self._used = True
        return engine

    # -- registration ---------------------------------------------------
    def _register(self, fns: List[Callable], cls: type, fn: Callable, what: str):
        self._check_open()
        if not callable(fn):
            raise TypeError(f"{what}() takes a callable, got {type(fn).__name__}")
        with self._lock:
            self._refork_for_registration()
            self._check_new(what)
            fns.append(fn)
        return cls(self, len(fns) - 1, fn)

    def _refork_for_registration(self) -> None:
        """`with tf.Worker(...) as w:` starts the children at once, yet the
        natural next line is `w.register_sub(fn)`. Children learn functions by
        being forked, so while no task has been submitted (and no scope
        opened) such a registration stops the children and engine; the next
        call that needs them forks a new set. Arena arrays are untouched:
        the arena stays mapped in this process. After any work, registering
        is an error as for an explicit init()."""
        if not (self._implicit_init and self._state == "running" and self._engine is not None):
            return
        if self._used or self._engine.stats()["submitted"]:
            return
        engine, self._engine = self._engine, None
        self._state = "new"
        _live_workers.discard(self)
        try:
            engine.shutdown(False, 2.0)
        finally:
            _forkserver.forget_fds(self._fds)
            self._fds = []

    def register_sub(self, fn: Callable) -> SubHandle:
        """fn(args) will run on a sub-worker process."""
        return self._register(self._sub_fns, SubHandle, fn, "register_sub")

    def register_kernel(self, fn: Callable) -> KernelHandle:
        """fn(args, chip) will run on a chip process; fn may be a
        tf.NativeKernel, which the chip runs without entering Python."""
        return self._register(self._kernel_fns, KernelHandle, fn, "register_kernel")

    def register_orch(self, fn: Callable) -> OrchHandle:
        """fn(orch, args) will run on a next-level Worker (level >= 4)."""
        return self._register(self._orch_fns, OrchHandle, fn, "register_orch")

    sub = register_sub
    kernel = register_kernel
    orch = register_orch

    # -- tensors --------------------------------------------------------
    def _ensure_arena(self) -> "_core.Arena":
        if self._arena is None:
            self._arena = _core.Arena(self._arena_bytes)
        return self._arena

    def alloc(self, shape, dtype=np.float32) -> np.ndarray:
        """An array in the shared arena, visible zero-copy in every child."""
        with self._lock:
            self._check_open()
            dt = np.dtype(dtype)
            if dt.hasobject or dt.fields is not None or dt.itemsize == 0:
                raise TypeError(f"w.alloc(): dtype {dt} cannot live in shared memory; use a numeric dtype")
            shape_t = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
            if any(s < 0 for s in shape_t):
                raise ValueError(f"w.alloc(): negative dimension in shape {shape_t}")
            nbytes = math.prod(shape_t) * dt.itemsize
            raw = _core.arena_alloc(self._ensure_arena(), nbytes)
        return raw.view(dt).reshape(shape_t)

    def share(self, array) -> np.ndarray:
        """A copy of `array` in the shared arena."""
        a = np.asarray(array)
        out = self.alloc(a.shape, a.dtype)
        out[...] = a
        return out

    # -- lifecycle ------------------------------------------------------
    def init(self) -> "Worker":
        """Maps the shared memory, forks every child, then starts the engine."""
        with self._lock:
            self._check_open()
            if self._state != "new":
                if self._implicit_init:  # `with` already did it: init() inside the block is harmless
                    return self
                raise WorkerStateError(f"{self.name} is already initialised")
            arena = self._ensure_arena()
            region = _core.SharedRegion(self._subs + self._chips, max(self._chips, 1))
            if self._output not in ("prefix", "inherit"):
                os.makedirs(self._output, exist_ok=True)
            pid, pidfd, sock_fd, children, fds = _forkserver.start(
                subs=self._subs, chips=self._chips, region=region, arena=arena, sub_fns=self._sub_fns,
                kernel_fns=self._kernel_fns, output=self._output)
            # Every child exists: only now may engine threads start. The engine
            # owns the descriptors from here on.
            specs = [(0 if kind == "sub" else 1, index, child_pid, fd) for kind, index, child_pid, fd in children]
            self._engine = _core.Engine(self._window, region, arena, self._subs, self._chips, specs,
                                        (pid, pidfd, sock_fd, True))
            self._fds = fds
            self._server_pid = pid
            self._state = "running"
            _live_workers.add(self)
        return self

    def close(self) -> None:
        """Waits for submitted work, stops every child and frees the engine."""
        self._close(cancel=False)

    def _close(self, cancel: bool, grace: float = 2.0) -> None:
        with self._lock:
            if self._state == "closed":
                return
            engine, self._state = self._engine, "closed"
            self._engine = None
            _live_workers.discard(self)
        if engine is None:
            return
        try:
            engine.shutdown(cancel, grace)
        except BaseException:
            engine.shutdown(True, 0.5)  # interrupted while waiting: stop at once
            raise
        finally:
            _forkserver.forget_fds(self._fds)
            self._log_unreported([Failure(*f) for f in engine.take_failures()])

    def _log_unreported(self, failures: List[Failure], shown: int = 5) -> None:
        for f in failures[:shown]:
            log.warning("tierflow: %s closed with an unreported failure: task %d (%s%s): %s", self.name,
                        f.task_id, f.kind, f" on {f.worker}" if f.worker else "", f.message)
        if len(failures) > shown:
            log.warning("tierflow: %s closed with %d more unreported failure(s)", self.name, len(failures) - shown)

    def __enter__(self) -> "Worker":
        with self._lock:
            if self._state == "new":
                self.init()
                self._implicit_init = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Ctrl-C: stop running tasks quickly; other errors: let them finish briefly.
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self._close(cancel=exc_type is not None, grace=0.5 if interrupted else 2.0)

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") == "running":
            try:
                self._close(cancel=True)
            except Exception:
                pass

    # -- submitting (the default Orchestrator) ---------------------------
    def submit_sub(self, handle, args=None, *, retries=0):
        return self._orch.submit_sub(handle, args, retries=retries)

    def submit_next_level(self, handle, args=None, worker=None, *, retries=0):
        return self._orch.submit_next_level(handle, args, worker, retries=retries)

    def submit_group(self, handle, args_list, workers=None, *, retries=0):
        return self._orch.submit_group(handle, args_list, workers, retries=retries)

    def scope(self):
        return self._orch.scope()

    def drain(self, timeout: Optional[float] = None) -> None:
        """Waits for everything submitted so far; raises tf.TaskError listing
        the failures since the previous drain."""
        engine = self._live_engine()
        if not engine.drain(timeout):
            s = engine.stats()
            running = ", ".join(f"task {t} on {w}" for w, t in s["running"].items()) or "none"
            raise TimeoutError(f"drain() timed out after {timeout} s with {s['outstanding']} task(s) "
                               f"unfinished; running: {running}; queued: {s['queue_depth']}")
        failures = [Failure(*f) for f in engine.take_failures()]
        # The failures are reported now: bytes they left undefined stop
        # poisoning later tasks.
        engine.clear_failed_ranges()
        if failures:
            TaskError.raise_for(failures)

    def run(self, fn: Callable, args: Any = None) -> None:
        """Calls fn(orch, args), then drain()."""
        self._live_engine()
        self._orch.run(fn, args)

    # -- observability --------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        engine = self._live_engine()
        return engine.stats()

    def pids(self) -> Dict[str, int]:
        """{"chip 0": pid, "sub 0": pid, ...}: the current process of each child."""
        return self._live_engine().pids()
