"""tf.Worker: one level of the hierarchy and the lifecycle of its processes.

    new --init()--> running --close()--> closed
     |                                     ^
     +------------- close() ---------------+

Python decides *when* (registration, fork ordering, shutdown); the C++ engine
decides *how fast*. A level-3 Worker owns `chips` chip processes and
`sub_workers` Python sub-worker processes, forked in init() before any
engine thread starts.

A Worker belongs to the process that created it. A forked copy — a task
running in a child, or the user's own os.fork() — sees every method raise
WorkerStateError, and its exit (atexit, garbage collection) leaves the
creator's pool alone.
"""
from __future__ import annotations

import atexit
import logging
import math
import operator
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import _core, _forkserver, _tracefile
from ._errors import ArenaExhausted, RemoteError, WorkerClosed, WorkerStateError
from ._handles import KernelHandle, OrchHandle, SubHandle
from ._level import LocalSpec
from .native import NativeKernel
from .orchestrator import Orchestrator
from .session import Session, check_session_args

log = logging.getLogger("tierflow")

# What the engine supports; larger values are refused before anything is forked.
MAX_WINDOW = 1 << 20
MAX_CHIPS = 1024
MAX_SUB_WORKERS = 1024
MAX_ARENA_BYTES = 1 << 44
MAX_LEVEL = 3 + 6  # an arena per level, at most 8 (the engine's arena spaces) from a chip up

class _InitAttempt:
    """One initialisation, which concurrent init() calls share."""

    def __init__(self):
        self.finished = threading.Event()
        self.error: Optional[BaseException] = None


_live_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()  # running, in this process: closed at exit
_all_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for w in list(_live_workers):
        try:
            w._close(cancel=True)
        except Exception:  # interpreter is exiting; report, keep going
            log.exception("tierflow: closing a Worker at exit failed")


def _disown_after_fork() -> None:
    """In a forked child: every Worker belongs to the parent. Drop this
    copy's engine handles (their destructors do nothing in a foreign
    process) so no method, atexit handler or finalizer can act on them."""
    _live_workers.clear()
    for w in list(_all_workers):
        for s in [w._orch, *w._sessions.values()]:
            s._core = None
        w._engine = None


os.register_at_fork(after_in_child=_disown_after_fork)


def _count(name: str, value: Any, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name}={value} is more than tierflow supports (at most {maximum})")
    return int(value)


def _log_events(engine: "_core.Engine", name: str) -> None:
    """The body of a Worker's log thread: hands the engine's lines (deaths,
    replacements, retries, timeouts, cancellations) to the "tierflow"
    logger until the engine has stopped. The engine queues them when they
    happen; formatting and handlers run here, off the scheduler's path."""
    while True:
        try:
            lines, still_open = engine.take_events(1.0)
        except Exception:  # the engine went away under us
            return
        for level, text in lines:
            log.log(level, "%s: %s", name, text)
        if not still_open:
            return


def _lineage(w: "Worker"):
    """(the top Worker of w's tree, w's depth below it): templates at the
    same depth of one tree may share handles (Worker._knows_sibling_handle).
    The chain survives the forks that run each template in its own child."""
    depth = 0
    while w._family is not None:
        w, depth = w._family, depth + 1
    return id(w), depth


def _callable_name(fn: Callable) -> str:
    if isinstance(fn, NativeKernel):
        return fn.symbol
    return getattr(fn, "__name__", None) or type(fn).__name__


class Worker:
    """The engine of one level.

    ``tf.Worker(level=3, chips=N, sub_workers=M)`` is one host: N simulated
    chip processes and M Python sub-worker processes that share tensors
    zero-copy through a shared-memory arena. ``window`` bounds the tasks
    alive at once (a submit beyond it blocks: back-pressure), ``arena_bytes``
    the arena, ``output`` where the children's stdout/stderr go ("prefix",
    "inherit" or a directory). Register callables, then ``init()`` (or
    ``with tf.Worker(...) as w:``), submit, ``drain()``, ``close()``.
    """

    def __init__(self, level: int = 3, *, chips: int = 0, sub_workers: int = 0, window: int = 1024,
                 arena_bytes: int = 1 << 30, output: str = "prefix", trace: Optional[str] = None,
                 name: Optional[str] = None, trace_flows: str = "all"):
        level = _count("level", level, 3, MAX_LEVEL)
        self._trace = _tracefile.check_path(trace)
        if trace_flows not in _tracefile.FLOWS:
            raise ValueError(f"trace_flows must be one of {', '.join(_tracefile.FLOWS)}, got {trace_flows!r}")
        self._trace_flows = trace_flows
        # Set in a next-level child of a traced parent (from its LocalSpec):
        # where it writes its part of the trace when it closes (a prefix; the
        # child adds its pid).
        self._trace_part: Optional[str] = None
        self._trace_dir: Optional[str] = None
        self._trace_record = False  # record without a file of its own (a daemon answers its clients from it)
        self.level = level
        self.name = name or f"worker-{id(self):x}"
        self._chips = _count("chips", chips, 0, MAX_CHIPS)
        if level >= 4 and self._chips:
            raise ValueError(f"a level-{level} Worker has no chips of its own; its next level is level-{level - 1} "
                             f"Workers: add them with w.add_worker(tf.Worker(level={level - 1}, chips=N, ...))")
        # The next level: chips at level 3; level-(N-1) Workers above it,
        # added with add_worker() (self._chips counts them).
        self._next_kind = "chip" if level == 3 else f"l{level - 1}"
        self._next_what = "chip" if level == 3 else f"level-{level - 1} Worker"
        self._next_handle = KernelHandle if level == 3 else OrchHandle
        self._templates: List[Any] = []  # per next-level worker: a LocalSpec or a RemoteSpec
        self._parent: Optional["Worker"] = None  # the Worker this one was added to as a template
        self._family: Optional["Worker"] = None  # that Worker, also once this runs in its child
        # Set when this Worker runs inside a next-level child of a Worker
        # above: the arenas above (nearest first), and where its children's
        # prefixed output goes (the top level's stderr) under which name path.
        self._ancestors: List[Any] = []
        self._out_fd = 2
        self._out_path = ""
        self._subs = _count("sub_workers", sub_workers, 0, MAX_SUB_WORKERS)
        self._window = _count("window", window, 1, MAX_WINDOW)
        self._arena_bytes = _count("arena_bytes", arena_bytes, 1, MAX_ARENA_BYTES)
        if not isinstance(output, (str, os.PathLike)):
            raise TypeError(f"output must be 'prefix', 'inherit' or a directory path, got {type(output).__name__}")
        output = os.fspath(output)
        if output not in ("prefix", "inherit") and os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"output={output!r} is neither 'prefix', 'inherit' nor a directory")
        self._output = output
        self._pid = os.getpid()
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
        self._orch = self._default_session = Session(self, None, "default", 1)
        self._sessions: Dict[str, Session] = {}  # open sessions other than the default, by name
        self._attempt_lock = threading.Lock()
        self._attempt: Optional[_InitAttempt] = None
        _all_workers.add(self)

    def __repr__(self) -> str:
        return (f"<tf.Worker {self.name} level={self.level} chips={self._chips} "
                f"sub_workers={self._subs} {self._state}>")

    # -- phase checks ---------------------------------------------------
    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise WorkerStateError(
                f"{self.name} belongs to process {self._pid}, not to this process ({os.getpid()}): a task cannot "
                f"submit work, allocate or use its Worker in any other way (orch functions can submit: they run "
                f"on level-4 Workers and receive an Orchestrator), and a copy made by os.fork() cannot use the "
                f"parent's Worker; create a new Worker in this process instead")

    def _check_open(self) -> None:
        self._check_process()
        if self._state == "closed":
            raise WorkerClosed(f"{self.name} is closed")
        if self._parent is not None:
            raise WorkerStateError(
                f"{self.name} is a template added to {self._parent.name} with add_worker(): it runs in that "
                f"Worker's child process, started by its init(); submit to {self._parent.name} (its orch functions "
                f"receive this Worker's Orchestrator) and allocate tensors there")

    def _check_template(self, what: str) -> None:
        """Registration on a template: allowed until its parent starts."""
        parent = self._parent
        if parent is not None and parent._state != "new":
            raise WorkerStateError(f"{what} on {self.name} must happen before {parent.name}.init(): {self.name} is "
                                   f"a template its child processes were forked from")

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

    def _live_session(self, orch: Orchestrator) -> "_core.Session":
        self._live_engine()
        if isinstance(orch, Session):
            orch._check_session()
        return orch._core

    def _submit_session(self, orch: Orchestrator) -> "_core.Session":
        session = self._live_session(orch)
        self._used = True
        return session

    # -- registration ---------------------------------------------------
    def _register(self, fns: List[Callable], cls: type, fn: Callable, what: str):
        template = self._parent is not None
        if template:  # registering is a template's whole use
            self._check_process()
            self._check_template(what)
        else:
            self._check_open()
        if not callable(fn) and not isinstance(fn, NativeKernel):
            raise TypeError(f"{what}() takes a callable, got {type(fn).__name__}")
        if isinstance(fn, NativeKernel) and cls is not KernelHandle:
            raise TypeError(f"{what}() cannot take {fn!r}: a native kernel runs only on chips; register it with "
                            f"w.register_kernel()")
        with self._lock:
            if not template:
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
        # The fast submit path does not set _used; the engine's count says it
        # all. Other sessions' clients count on these children: no re-fork.
        if self._used or self._sessions or self._engine.stats()["submitted"]:
            return
        engine, self._engine = self._engine, None
        self._orch._core = None
        self._state = "new"
        _live_workers.discard(self)
        engine.shutdown(False, 2.0)
        self._join_log_thread()

    def register_sub(self, fn: Callable) -> SubHandle:
        """Registers fn(args) to run on a sub-worker process; returns its
        tf.SubHandle for submit_sub(). Before init() (or, inside a `with`
        block, before any work)."""
        return self._register(self._sub_fns, SubHandle, fn, "register_sub")

    def register_kernel(self, fn: Callable) -> KernelHandle:
        """Registers fn(args, chip) to run on a chip process; fn may be a
        tf.NativeKernel, which the chip runs without entering Python. Returns
        its tf.KernelHandle for submit_next_level() and submit_group()."""
        return self._register(self._kernel_fns, KernelHandle, fn, "register_kernel")

    def register_orch(self, fn: Callable) -> OrchHandle:
        """Registers fn(orch, args) to run on a next-level Worker (level >= 4)."""
        return self._register(self._orch_fns, OrchHandle, fn, "register_orch")

    sub = register_sub
    kernel = register_kernel
    orch = register_orch

    # -- levels above 3 -------------------------------------------------
    def add_worker(self, worker: "Worker") -> int:
        """Adds a level-(N-1) Worker, not initialised, as a template of one
        next-level worker of this level-N Worker (N >= 4); returns its index
        for submit_next_level(worker=) and submit_group(workers=). At init()
        it runs in a child process of its own, forked before this Worker's
        engine starts, and initialises itself there (its own chips or
        Workers, sub-workers, window and arena); its registered handles are
        valid in the orch functions that run on it."""
        self._check_open()
        with self._lock:  # inside `with`, before any work: like a registration (see _register)
            self._refork_for_registration()
            self._check_new("add_worker()")
        if self.level < 4:
            raise WorkerStateError(f"add_worker() composes lower levels: it needs a Worker of level >= 4, and "
                                   f"{self.name} is level {self.level} (its next level is its chips)")
        if not isinstance(worker, Worker):
            raise TypeError(f"add_worker() takes a tf.Worker of level {self.level - 1}, got {type(worker).__name__}")
        if worker is self:
            raise ValueError("add_worker(): a Worker cannot be added to itself")
        if worker.level != self.level - 1:
            raise ValueError(f"add_worker(): {self.name} is level {self.level}, so it adds level-{self.level - 1} "
                             f"Workers; {worker.name} is level {worker.level}")
        with self._lock, worker._lock:
            if worker._parent is not None and worker._parent is not self:
                raise ValueError(f"add_worker(): {worker.name} is already added to {worker._parent.name}; a template "
                                 f"belongs to one parent (which may add it several times): create another tf.Worker "
                                 f"for this one")
            if worker._state != "new" or worker._engine is not None:
                raise WorkerStateError(f"add_worker(): {worker.name} is {worker._state}; add it before its init() "
                                       f"(the parent initialises it in its own process)")
            if worker._arena is not None:
                raise WorkerStateError(f"add_worker(): {worker.name} has allocated tensors; a template owns no "
                                       f"memory: allocate on {self.name} and pass the tensors in the TaskArgs")
            if worker._pid != self._pid:
                raise WorkerStateError(f"add_worker(): {worker.name} belongs to another process")
            worker._parent = worker._family = self
            self._templates.append(LocalSpec(worker))
            self._chips = len(self._templates)
            return self._chips - 1

    def add_remote(self, address: str, l3: "Worker", *, token: Optional[str] = None, tls: Any = None,
                   heartbeat_timeout: float = 10.0, connect_timeout: float = 10.0) -> int:
        """Adds a level-3 Worker served by a `tierflow daemon` at "host:port"
        as one next-level worker of this level-4 Worker; returns its index,
        as add_worker() does. `l3` is a level-3 template (not
        initialised) whose registered subs and kernels the orch functions may
        use: they are shipped to the daemon by content at init(). `token`:
        the daemon's token (its token file's contents; default: the
        TIERFLOW_TOKEN environment variable). `tls`: a CA certificate file
        that verifies a TLS daemon; None connects in plaintext (loopback, or
        a daemon started with --insecure). A daemon that dies or does not
        answer for `heartbeat_timeout` seconds fails its task as
        worker_died naming the address. At init() the daemon must answer
        within `connect_timeout` seconds with the same protocol, Python,
        cloudpickle and numpy versions, and enough chips and sub-workers;
        otherwise init() raises tf.RemoteError saying what differs.
        Tensors travel by value (docs/remote.md)."""
        self._check_open()
        with self._lock:
            self._refork_for_registration()
            self._check_new("add_remote()")
        if self.level != 4:
            raise WorkerStateError(f"add_remote() adds a level-3 daemon, so it needs a level-4 Worker; {self.name} "
                                   f"is level {self.level}")
        from .remote.client import RemoteSpec
        from .remote.wire import split_address
        split_address(address)
        worker = l3
        if not isinstance(worker, Worker):
            raise TypeError(f"add_remote() takes a tf.Worker of level 3 as its template, got {type(worker).__name__}")
        if worker.level != 3:
            raise ValueError(f"add_remote(): the template must be a level-3 Worker; {worker.name} is level "
                             f"{worker.level}")
        if token is None:
            token = os.environ.get("TIERFLOW_TOKEN")
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise TypeError("add_remote(): token must be a non-empty str (the daemon's token file's contents)")
        if tls is not None:
            tls = os.fspath(tls)
            if not os.path.isfile(tls):
                raise FileNotFoundError(f"add_remote(): tls={tls!r} must name a CA certificate file (PEM) that "
                                        f"verifies the daemon's certificate")
        for what, v in (("heartbeat_timeout", heartbeat_timeout), ("connect_timeout", connect_timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.2 <= v <= 3600:
                raise ValueError(f"add_remote(): {what} must be a number of seconds in 0.2..3600, got {v!r}")
        with self._lock, worker._lock:
            if worker._parent is not None and worker._parent is not self:
                raise ValueError(f"add_remote(): {worker.name} is already added to {worker._parent.name}; a template "
                                 f"belongs to one parent (which may add it several times): create another tf.Worker "
                                 f"for this one")
            if worker._state != "new" or worker._engine is not None or worker._arena is not None:
                raise WorkerStateError(f"add_remote(): {worker.name} is {worker._state}; a template is never "
                                       f"initialised and owns no memory")
            worker._parent = worker._family = self
            self._templates.append(RemoteSpec(address, worker, token.strip() if token else None, tls,
                                              float(heartbeat_timeout), float(connect_timeout)))
            self._chips = len(self._templates)
            return self._chips - 1

    def _check_remotes(self) -> None:
        """Waits for each remote's handshake (made by its proxy child) and
        raises tf.RemoteError with the first refusal."""
        from ._level import inner_stats
        from .remote.client import RemoteSpec
        for i, t in enumerate(self._templates):
            if not isinstance(t, RemoteSpec):
                continue
            answer = inner_stats(t._stats_address + " hello", timeout=t.connect_timeout + 30)
            if answer is None:
                raise RemoteError(f"add_remote({t.address!r}): its client process ({self._next_kind} {i}) did not "
                                  f"report; see its output above")
            if answer.get("error"):
                raise RemoteError(f"add_remote({t.address!r}): {answer['error']}")

    def _knows_sibling_handle(self, handle) -> bool:
        """A handle of another template at the same place in the same tree
        (added to the same parent, or, a level deeper, to templates added to
        the same grandparent, ...) is valid here when this Worker registered
        the same function at the same index: one orch function can then run
        on several next-level Workers (a group) that were set up alike."""
        owner = handle._owner
        if self._family is None or not isinstance(owner, Worker) or _lineage(owner) != _lineage(self):
            return False
        fns = {SubHandle: self._sub_fns, KernelHandle: self._kernel_fns, OrchHandle: self._orch_fns}[type(handle)]
        if handle.index >= len(fns):
            return False
        mine = fns[handle.index]
        return mine is handle.fn or (isinstance(mine, NativeKernel) and mine == handle.fn)

    def _adopt(self, ancestors: List[Any], out_fd: int, out_path: str) -> "Worker":
        """In the next-level child process this template was forked into:
        make it this process's own Worker, under the arenas above it."""
        self._parent = None
        self._pid = os.getpid()
        self._ancestors = list(ancestors)
        self._out_fd = out_fd
        self._out_path = out_path
        return self

    # -- tensors --------------------------------------------------------
    def _ensure_arena(self) -> "_core.Arena":
        if self._arena is None:
            try:
                self._arena = _core.Arena(self._arena_bytes)
            except RuntimeError as e:
                raise MemoryError(str(e)) from None
            _forkserver.register_mapping(self._arena)
        return self._arena

    def alloc(self, shape, dtype=np.float32) -> np.ndarray:
        """An array of `shape` and `dtype` (default float32) in the shared
        arena, visible zero-copy in every child. Like np.empty, its contents
        are undefined until written (w.zeros / w.full initialise). The memory
        is reused once no array and no unfinished task refers to it; an arena
        too small raises MemoryError naming its size and the request."""
        with self._lock:
            self._check_open()
            dt = np.dtype(dtype)
            if dt.hasobject or dt.fields is not None or dt.itemsize == 0:
                raise TypeError(f"w.alloc(): dtype {dt} cannot live in shared memory; use a numeric dtype")
            if dt.kind in "mM":  # numpy gives these no buffer interface, so no task could be handed one
                raise TypeError(f"w.alloc(): dtype {dt} cannot be a task tensor (numpy arrays of it have no buffer "
                                f"interface); allocate int64 and view it: w.alloc(shape, np.int64).view({str(dt)!r})"
                                f" outside tasks, args.tensor(i).view({str(dt)!r}) inside")
            try:
                dims = (operator.index(shape),) if not isinstance(shape, (tuple, list)) else \
                    tuple(operator.index(s) for s in shape)
            except TypeError:
                raise TypeError(f"w.alloc(): shape must be an int or a tuple of ints, got {shape!r}") from None
            if any(s < 0 for s in dims):
                raise ValueError(f"w.alloc(): negative dimension in shape {dims}")
            nbytes = math.prod(dims) * dt.itemsize
            arena = self._ensure_arena()
            if nbytes > arena.size:
                raise ArenaExhausted(f"arena exhausted: cannot allocate {nbytes} bytes (shape {dims}, {dt}) from an "
                                     f"arena of {arena.size} bytes; pass a larger arena_bytes to tf.Worker")
            raw = _core.arena_alloc(arena, nbytes)
        return raw.view(dt).reshape(dims)

    def zeros(self, shape, dtype=np.float32) -> np.ndarray:
        """Like alloc(), filled with zeros."""
        out = self.alloc(shape, dtype)
        out[...] = 0
        return out

    def full(self, shape, fill_value, dtype=None) -> np.ndarray:
        """Like alloc(), filled with `fill_value` (dtype defaults to its numpy type)."""
        out = self.alloc(shape, np.asarray(fill_value).dtype if dtype is None else dtype)
        out[...] = fill_value
        return out

    def share(self, array) -> np.ndarray:
        """A copy of `array` in the shared arena."""
        a = np.asarray(array)
        out = self.alloc(a.shape, a.dtype)
        out[...] = a
        return out

    # -- lifecycle ------------------------------------------------------
    def init(self) -> "Worker":
        """Maps the shared memory, forks every child, then starts the engine.
        Initialises once: calls from several threads at once, and later
        calls, all return this Worker — or all raise the error the one
        initialisation met. A failure on the way leaves no process,
        descriptor or mapping behind (a later call tries again)."""
        with self._attempt_lock:
            attempt = self._attempt
            lead = attempt is None or attempt.finished.is_set()
            if lead:
                if self._state == "running" and self._engine is not None:
                    return self
                attempt = self._attempt = _InitAttempt()
        if not lead:
            attempt.finished.wait()
            if attempt.error is not None:
                raise attempt.error
            return self
        try:
            self._init_once()
        except BaseException as e:
            attempt.error = e
            raise
        finally:
            attempt.finished.set()
        return self

    def _init_once(self) -> None:
        with self._lock:
            self._check_open()
            if self._state != "new":
                return
            arena = self._ensure_arena()
            region = _core.SharedRegion(self._subs + self._chips, max(self._chips, 1))
            _forkserver.register_mapping(region)
            if self._output not in ("prefix", "inherit"):
                os.makedirs(self._output, exist_ok=True)
            if self.level == 3:
                next_plan = [("chip", i, self._kernel_fns, None) for i in range(self._chips)]
            else:  # each next-level child runs a Worker from its template and serves orch functions
                next_plan = [(self._next_kind, i, self._orch_fns, t) for i, t in enumerate(self._templates)]
                token = os.urandom(8).hex()
                for i, t in enumerate(self._templates):  # where the child answers stats(): see _level.py
                    t._stats_address = f"\0tierflow-{os.getpid()}-{token}-{self._next_kind} {i}"
                if self._tracing():  # each local next-level Worker writes its part of the trace there
                    import tempfile
                    self._trace_dir = tempfile.mkdtemp(prefix="tierflow-trace-")
                    for i, t in enumerate(self._templates):  # a remote's client asks its daemon (client.py)
                        t._trace_part = os.path.join(self._trace_dir, f"{self._next_kind}-{i}-")
            pid, pidfd, sock_fd, children = _forkserver.start(
                subs=[("sub", i, self._sub_fns, None) for i in range(self._subs)], nexts=next_plan, region=region,
                arena=arena, ancestors=self._ancestors, output=self._output, out_path=self._out_path)
            # From here the link owns the server and the descriptors; dropping
            # it (an exception below) kills the server and closes them.
            link = _core.ForkServerLink(pid, pidfd, sock_fd,
                                        [(0 if kind == "sub" else 1, index, child_pid, fd)
                                         for kind, index, child_pid, fd in children])
            try:
                # Every child exists: only now may engine threads start.
                engine = _core.Engine(self._window, region, arena, self._subs, self._chips, link,
                                      next_kind=self._next_kind, output_fd=self._out_fd,
                                      output_path=self._out_path, trace=self._tracing())
                engine.set_callable_names(0, [_callable_name(f) for f in self._sub_fns])
                engine.set_callable_names(1, [_callable_name(f) for f in (
                    self._kernel_fns if self.level == 3 else self._orch_fns)])
                if self._ancestors:
                    engine.set_ancestor_arenas(self._ancestors)
            except BaseException:
                link.abandon()
                raise
            self._engine = engine
            self._orch._core = engine.default_session()
            self._server_pid = pid
            self._state = "running"
            _live_workers.add(self)
            # Started after every fork this Worker makes (its fork server forks from here on).
            self._log_thread = threading.Thread(target=_log_events, args=(engine, self.name), name="tierflow-log",
                                                daemon=True)
            self._log_thread.start()
            log.debug("%s: started: level %d, %d sub-worker(s), %d %s(s), window %d, arena %d bytes", self.name,
                      self.level, self._subs, self._chips, self._next_what, self._window, self._arena_bytes)
            try:
                self._check_remotes()
            except BaseException:
                # As if init() never ran: a later call tries again.
                self._engine, self._state = None, "new"
                self._orch._core = None
                _live_workers.discard(self)
                engine.shutdown(True, 0.5)
                self._join_log_thread()
                raise

    # -- sessions -------------------------------------------------------
    def session(self, name: str, weight: int = 1) -> Session:
        """A new client of this Worker's pool (see tf.Session): its own
        ready queue served in weighted round robin (weight: its share of
        turns and of the window), its own scopes, drain, failures and
        cancellation. Cheap (no process, no memory of its own); any thread,
        any time after init(). Names are unique among open sessions."""
        check_session_args(name, weight)
        with self._lock:
            engine = self._live_engine()
            if name == "default" or name in self._sessions:
                raise ValueError(f"a session named {name!r} is already open on {self.name}; pick another name")
            s = Session(self, engine.open_session(name, int(weight)), name, int(weight))
            self._sessions[name] = s
        log.debug("%s: session %r opened (weight %d)", self.name, name, int(weight))
        return s

    def _forget_session(self, s: Session) -> None:
        with self._lock:
            if self._sessions.get(s.name) is s:
                del self._sessions[s.name]

    def sessions(self) -> List[Session]:
        """The open sessions, the default one first."""
        with self._lock:
            return [self._default_session, *self._sessions.values()]

    def close(self, cancel: bool = False) -> None:
        """Waits for everything submitted (with cancel=True: cancels what has
        not started and stops what runs), stops every child and frees the
        engine. Idempotent. Tasks stay queryable afterwards; arrays from
        alloc() stay valid while referenced."""
        self._close(cancel=bool(cancel), grace=0.5 if cancel else 2.0)

    def _close(self, cancel: bool, grace: float = 2.0) -> None:
        if os.getpid() != self._pid:
            return  # a forked copy: the pool is the creator's
        with self._lock:
            if self._state == "closed":
                return
            engine, self._state = self._engine, "closed"
            session = self._orch._core
            self._engine = None
            self._orch._core = None
            for s in self._sessions.values():  # the engine closes them all
                s._closed = True
                s._core = None
            self._sessions.clear()
            self._arena = None  # the mapping goes once no array needs it
            _live_workers.discard(self)
        if engine is None:
            return
        log.debug("%s: closing%s", self.name, " (cancelling what has not finished)" if cancel else "")
        try:
            engine.shutdown(cancel, grace)
        except BaseException:
            engine.shutdown(True, 0.5)  # interrupted while waiting: stop at once
            raise
        finally:
            if session is not None:
                self._log_unreported(session.take_failures())
            if self._tracing():
                self._write_trace(engine, final=True)
            # The log thread ends once it took the engine's last lines. Wait
            # for it: a thread still inside the engine's wait when the
            # interpreter finalises would be torn down in C++ frames.
            self._join_log_thread()

    # -- tracing -----------------------------------------------------------
    def _tracing(self) -> bool:
        return self._trace is not None or self._trace_part is not None or self._trace_record

    def _trace_label(self) -> str:
        where = self._out_path.strip()
        return f"{where or self.name} (level {self.level})"

    def _trace_processes(self, engine, final: bool) -> list:
        snap = engine.trace_snapshot()
        processes = [_tracefile.process_of(self._trace_label(), snap)] if snap is not None else []
        if final and self._trace_dir is not None:  # the parts the next-level Workers wrote as they closed
            for i, _t in enumerate(self._templates):
                processes += _tracefile.read_parts(os.path.join(self._trace_dir, f"{self._next_kind}-{i}-"))
        return processes

    def _write_trace(self, engine, final: bool) -> None:
        try:
            processes = self._trace_processes(engine, final)
            if self._trace is not None:
                _tracefile.write(self._trace, processes, worker=self.name, flows=self._trace_flows)
            elif self._trace_part is not None:
                _tracefile.write_part(f"{self._trace_part}{os.getpid()}.json", processes)
        except Exception:
            log.exception("%s: writing the trace failed", self.name)
        finally:
            if final and self._trace_dir is not None:
                import shutil
                shutil.rmtree(self._trace_dir, ignore_errors=True)
                self._trace_dir = None

    def trace_flush(self) -> None:
        """Writes the trace file now (trace= given): everything this Worker
        recorded so far. The levels below add their parts when they close,
        so only the final file, written by close(), has them."""
        engine = self._live_engine()
        if self._trace is None:
            raise WorkerStateError(f"{self.name} does not trace: create it with trace=\"run.json\"")
        self._write_trace(engine, final=False)

    def _join_log_thread(self) -> None:
        t, self._log_thread = getattr(self, "_log_thread", None), None
        if t is not None and t is not threading.current_thread():
            t.join(5.0)

    def _log_unreported(self, records: List[tuple], shown: int = 5) -> None:
        for r in records[:shown]:
            task_id, worker, kind, message = r[0], r[1], r[2], r[3]
            log.warning("tierflow: %s closed with an unreported failure: task %d (%s%s): %s", self.name,
                        task_id, kind, f" on {worker}" if worker else "", message)
        if len(records) > shown:
            log.warning("tierflow: %s closed with %d more unreported failure(s)", self.name, len(records) - shown)

    def __enter__(self) -> "Worker":
        with self._lock:
            self._check_process()
            if self._state == "closed":
                raise WorkerClosed(f"{self.name} is closed; `with` needs a new Worker")
            if self._state == "new":
                self.init()
                self._implicit_init = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Leaving by an exception cancels; Ctrl-C stops running tasks quickly.
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self._close(cancel=exc_type is not None, grace=0.5 if interrupted else 2.0)

    def __del__(self) -> None:
        if getattr(self, "_state", "closed") == "running" and getattr(self, "_pid", None) == os.getpid():
            try:
                self._close(cancel=True)
            except Exception:
                pass

    # -- submitting (the default session) -------------------------------
    def submit_sub(self, handle, args=None, *, name=None, retries=0, retry_on=(), timeout=None):
        """Runs a registered sub-worker function on any idle sub-worker;
        returns its tf.Task. See tf.Orchestrator for the options."""
        return self._orch.submit_sub(handle, args, name=name, retries=retries, retry_on=retry_on, timeout=timeout)

    def submit_next_level(self, handle, args=None, worker=None, *, name=None, retries=0, retry_on=(), timeout=None):
        """Runs a registered kernel on chip `worker` (None: any idle chip);
        returns its tf.Task. See tf.Orchestrator for the options."""
        return self._orch.submit_next_level(handle, args, worker, name=name, retries=retries, retry_on=retry_on,
                                            timeout=timeout)

    def submit_group(self, handle, args_list, workers=None, *, name=None, retries=0, retry_on=(), timeout=None):
        """Runs one task on len(args_list) chips at once (member i gets
        args_list[i]); returns its tf.Task. See tf.Orchestrator."""
        return self._orch.submit_group(handle, args_list, workers, name=name, retries=retries, retry_on=retry_on,
                                       timeout=timeout)

    def scope(self):
        """``with w.scope():`` — tasks submitted inside are retired together
        when the block ends (their window slots come back as a unit). Never
        blocks; nestable. See docs/api.md, "Why and when to use scope()"."""
        return self._orch.scope()

    def drain(self, timeout: Optional[float] = None, *, progress: bool = False, dump_stacks: bool = False) -> None:
        """Waits for everything submitted so far; raises tf.TaskError listing
        the failures since the previous drain, TimeoutError after `timeout`
        seconds. Ctrl-C cancels the tasks that have not started, stops the
        running ones after a short grace, and propagates. progress=True
        shows a progress bar on stderr for a long drain (a terminal only)."""
        self._orch.drain(timeout, progress=progress, dump_stacks=dump_stacks)

    def run(self, fn: Callable, args: Any = None, *, progress: bool = False) -> None:
        """Calls fn(orch, args) with the default Orchestrator, then drain()."""
        self._live_engine()
        self._orch.run(fn, args, progress=progress)

    def _timeout_report(self, timeout, session: Optional[str] = None) -> str:
        s = self._engine.stats() if self._engine is not None else {"running": {}, "outstanding": "?",
                                                                     "queue_depth": "?"}
        running = ", ".join(f"task {t} on {w}" for w, t in s["running"].items()) or "none"
        head = (f"drain() timed out after {timeout} s with {s['outstanding']} task(s) unfinished; "
                f"running: {running}; queued: {s['queue_depth']}")
        try:
            detail = self._explain_text(session=session, limit=5)
        except Exception:  # closing meanwhile: the head says enough
            return head
        return head + "\n" + detail

    # -- stuck runs -----------------------------------------------------
    def explain(self) -> str:
        """A readable report of every unfinished task: running where and for
        how long; ready and queued behind how many of its session; or
        pending, waiting on which unfinished producers (ids, names,
        states). Asks the scheduler, which answers between two of its
        passes; cheap enough to call from a watchdog."""
        self._live_engine()
        return self._explain_text()

    def dump_stacks(self, pause: float = 0.3) -> List[str]:
        """Prints the Python stack of every thread of every child process to
        its output (prefixed as usual: "[sub 0] ..."), one child at a time
        — `pause` seconds apart, so two dumps never interleave — and returns
        the names of the children asked. For a stuck run: what each worker
        is doing right now. A next-level Worker's process dumps its own
        stacks; ask it for its children's with its own dump_stacks()."""
        import signal
        import time as _time
        from ._child import DUMP_SIGNAL
        asked = []
        for name, pid in self._live_engine().pids().items():
            if pid <= 0:
                continue
            try:
                os.kill(pid, DUMP_SIGNAL)
            except ProcessLookupError:
                continue
            asked.append(name)
            log.info("%s: asked %s (pid %d) for its stacks", self.name, name, pid)
            _time.sleep(pause)
        del signal
        return asked

    def _explain_text(self, session: Optional[str] = None, limit: int = 20) -> str:
        from ._explain import report
        return report(self.name, self._live_engine().explain(5.0), session=session, limit=limit)

    # -- observability --------------------------------------------------
    def stats(self) -> Dict[str, Any]:
        """Counters: submitted, completed, failed, live_tasks, outstanding,
        queue_depth, restarts, retried, and per worker busy_seconds, alive,
        tasks_per_worker, running (see docs/api.md). Above level 3, also
        each next-level Worker's own stats() under its name ("l3 0": {...};
        None while it is dead or does not answer within 5 s)."""
        s = self._live_engine().stats()
        if self.level >= 4:
            from ._level import inner_stats
            for i, t in enumerate(self._templates):
                name = f"{self._next_kind} {i}"
                s[name] = inner_stats(t._stats_address) if s["alive"].get(name) else None
        return s

    def pids(self) -> Dict[str, int]:
        """{"sub 0": pid, ..., "chip 0": pid, ...}: the current process of each child."""
        return self._live_engine().pids()
