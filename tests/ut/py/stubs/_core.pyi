"""tierflow's C++ engine (private; use the tierflow package)"""

from collections.abc import Sequence
import enum
from typing import Final

import numpy
from numpy.typing import NDArray


class Tag(enum.Enum):
    """How a task touches a tensor"""

    INPUT = 1

    OUTPUT = 2

    INOUT = 3

    NO_DEP = 4

class TaskArgs:
    """
    Tensors and scalars of one task. Build with .input/.output/.inout/.no_dep/.scalar; read inside a task with .tensor(i)/.scalar(i)/.tag(i).
    """

    def __init__(self) -> None: ...

    def input(self, t: object | None) -> TaskArgs:
        """
        Adds arena array `t` (or a view of one) that the task reads; it sees it read-only. Returns self.
        """

    def output(self, t: object | None) -> TaskArgs:
        """
        Adds an arena array the task overwrites without reading it. Returns self.
        """

    def inout(self, t: object | None) -> TaskArgs:
        """Adds an arena array the task reads and writes. Returns self."""

    def no_dep(self, t: object | None) -> TaskArgs:
        """
        Adds an arena array whose accesses the engine does not track (no dependency at all). Returns self.
        """

    def tensor(self, i: int) -> object:
        """
        Inside a task: tensor i as a numpy array of the submitted shape, dtype and strides (read-only for an input). On a builder: the array that was added.
        """

    def tag(self, i: int) -> Tag:
        """How the task touches tensor i: a tf.Tag"""

    def scalar(self, x: object | None) -> object:
        """
        On a builder: adds the scalar x (an int or a float, Python or numpy; a bool is 0 or 1) and returns self. Inside a task: returns scalar number x.
        """

    @property
    def num_tensors(self) -> int:
        """How many tensors"""

    @property
    def num_scalars(self) -> int:
        """How many scalars"""

    def __repr__(self) -> str: ...

class ArenaExhausted(MemoryError):
    pass

class Arena:
    def __init__(self, bytes: int) -> None: ...

    @property
    def size(self) -> int: ...

    @property
    def base_address(self) -> int: ...

    @property
    def bytes_in_use(self) -> int: ...

    @property
    def live_blocks(self) -> int: ...

    def contains_address(self, arg: int, /) -> bool: ...

    def forget_mapping(self) -> None:
        """
        In a forked process that does not use this arena: drop its pages, keep the addresses inaccessible
        """

def arena_alloc(arena: Arena, nbytes: int) -> NDArray[numpy.uint8]:
    """A uint8 array of nbytes over a new arena block"""

class SharedRegion:
    def __init__(self, mailboxes: int, barriers: int) -> None: ...

    def forget_mapping(self) -> None:
        """
        In a forked process that does not use this region: drop its pages, keep the addresses inaccessible
        """

class WindowExhausted(RuntimeError):
    pass

class WorkerClosed(RuntimeError):
    pass

class ForkServerLink:
    """
    The parent's hold on a fork server and its children until an Engine takes them over; dropping it unused kills the server and closes every descriptor.
    """

    def __init__(self, pid: int, pidfd: int, sock_fd: int, children: Sequence[tuple[int, int, int, int]]) -> None: ...

    @property
    def owns(self) -> bool: ...

    def abandon(self) -> None:
        """Kills the server and closes every descriptor (idempotent)"""

class Engine:
    def __init__(self, window: int, region: SharedRegion, arena: Arena, subs: int, chips: int, link: ForkServerLink, replace_dead: bool = True, next_kind: str = 'chip', output_fd: int = 2, output_path: str = '', trace: bool = False) -> None:
        """
        Starts a level over its forked children: `chips` next-level workers named `next_kind` i (chips at level 3); their prefixed output goes to `output_fd`, each name after `output_path`
        """

    def set_ancestor_arenas(self, arenas: Sequence[Arena]) -> None:
        """
        The arenas of the levels above, nearest first: their tensors, lent by a running task, are valid task tensors here
        """

    def lend(self, args: TaskArgs) -> None:
        """
        Lends the tensors of a task of the level above (received as `args`) to this level until end_loan()
        """

    def end_loan(self) -> None: ...

    def set_callable_names(self, kind: int, names: Sequence[str]) -> None: ...

    def default_session(self) -> Session: ...

    def open_session(self, name: str, weight: int) -> Session: ...

    def take_events(self, timeout_s: float) -> tuple:
        """
        Waits up to timeout_s for the engine's log lines (deaths, replacements, retries, timeouts, cancellations): ([(level, text), ...], open); open is False once the engine stopped and every line was taken
        """

    def explain(self, timeout_s: float) -> object:
        """
        Every unfinished task, as the scheduler sees it (see Scheduler::explain); None if it did not answer in time
        """

    def trace_snapshot(self) -> object:
        """
        The trace records so far (runs and edges as raw arrays of TraceRun / TraceEdge, interned names, worker names), or None when this engine does not trace
        """

    @property
    def owned_by_this_process(self) -> bool: ...

    def pids(self) -> dict: ...

    def stats(self) -> dict: ...

    def shutdown(self, cancel: bool, grace: float) -> None: ...

class Session:
    def submit(self, kind: int, callable: int, target: int, members: list, group_chips: Sequence[int], name: str, retries: int, retry_on: Sequence[str] | None, timeout: object | None) -> object: ...

    def submit_one(self, kind: int, callable: int, target: int, args: TaskArgs) -> object: ...

    def scope_begin(self) -> None: ...

    def scope_end(self) -> None: ...

    @property
    def scope_depth(self) -> int: ...

    def drain(self, timeout: object | None) -> bool:
        """Waits for every task of the session; False on timeout"""

    def take_failures(self) -> list:
        """The failures no drain has reported yet, as tuples"""

    def stats(self) -> dict: ...

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def close(self, cancel: bool, grace: float) -> None:
        """
        Refuses new submits, waits for the session's tasks, ends its scopes, removes it
        """

    @property
    def key(self) -> int:
        """Identifies the session while anything refers to it"""

    def cancel_pending(self, reason: str, grace: float) -> None:
        """
        Cancels the session's tasks that have not started; stops those still running after `grace` s
        """

    def take_done(self, timeout: object | None) -> list[int]:
        """Ids of watched tasks that finished since the last call"""

class TaskBase:
    """The engine's side of a tf.Task"""

    @property
    def id(self) -> int:
        """
        The task's id: unique within its Worker, increasing in submission order
        """

    @property
    def name(self) -> str:
        """The name given at submit, or the callable's name"""

    @property
    def state(self) -> str:
        """
        'pending', 'ready', 'running', 'completed', 'failed', 'cancelled' or 'consumed'
        """

    def done(self) -> bool:
        """True once the task completed, failed or was cancelled"""

    def running(self) -> bool:
        """True while the task runs on a worker"""

    def cancelled(self) -> bool:
        """
        True if the task was cancelled (by cancel(), an interrupt, a cancelling close(), or because a task it depends on was cancelled)
        """

def set_task_type(type: object) -> None:
    """Registers the Python subclass that submit returns"""

class ChildPort:
    def __init__(self, region: SharedRegion, arena: Arena, mailbox: int, chip_id: int = -1) -> None: ...

    def add_native(self, callable: int, path: str, symbol: str) -> None:
        """Serve `callable` with a C kernel from a shared library"""

    def add_ancestor_arena(self, arena: Arena) -> None:
        """
        Maps the arena of the next level up as the next space (1, 2, ...): tensors of tasks sent by a Worker of this process's level may live there
        """

    def wait(self) -> object:
        """
        Blocks until the next request: (callable, rank, size, barrier, TaskArgs), or None to exit
        """

    def complete(self, value: bytes) -> None:
        """Reports success with the pickled return value (b'' for None)"""

    def complete_when_drained(self, session: Session, value: bytes) -> bool:
        """
        Answers the current request with `value` as soon as everything submitted to `session` has finished, ending the loan of its tensors first — from the thread whose finish drains it. Blocks until then; False (nothing answered, the loan and the failures left to the caller) when some of that work failed
        """

    def fail(self, message: bytes, traceback: bytes, types: bytes, exception: bytes) -> None:
        """
        Reports a failure (UTF-8 text; shortened to fit the mailbox at character boundaries)
        """

    def lost(self, message: bytes, traceback: bytes) -> None:
        """
        Reports that what runs this request behind this worker is gone (a remote daemon): the task fails as worker_died, retries apply, and this worker keeps serving
        """

    def run_native(self, callable: int, rank: int, size: int, barrier: int, args: TaskArgs) -> None:
        """
        Runs and answers one request (returned by wait()) with the native kernel added for `callable` after this child started (add_native): a kernel that reached the child at run time
        """

    max_value_bytes: Final[int] = ...
    """The largest pickled return value a task can send back"""

    def barrier(self, index: int) -> bool:
        """Meets the other members of the group; False if the barrier was broken"""
