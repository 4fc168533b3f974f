"""The body of a forked child process: a chip, a sub-worker, or a
next-level worker of a level-N Worker (N >= 4), which runs a whole
level-(N-1) Worker built from its template and serves orch functions.

A child never returns into the parent's code: it serves requests from its
mailbox until asked to exit, then leaves with os._exit so no atexit handler,
finalizer or buffered parent output runs twice. Whatever a task does — return
an unpicklable value, raise an exception with undecodable text, print a
megabyte of traceback — the child reports it and serves the next request;
the report path cannot kill it.
"""
from __future__ import annotations

import ctypes
import faulthandler
import gc
import io
import os
import pickle
import resource
import signal
import sys
import traceback
from typing import Callable, Iterable, List, Optional, Tuple

from . import _core
from .native import NativeKernel

_PR_SET_PDEATHSIG = 1
DUMP_SIGNAL = signal.SIGUSR1  # w.dump_stacks()

# Where nested levels' children write their prefixed output: the top
# level's stderr, kept open (as this descriptor) by every next-level child
# and fork server below it. None at the top level, whose own stderr it is.
root_out_fd: Optional[int] = None
_MAX_LINE = 8 * 1024          # a longer traceback line keeps its head and tail
_MAX_PICKLED_EXCEPTION = 16 * 1024


class BarrierBroken(RuntimeError):
    """chip.barrier() cannot complete: another member of the group failed,
    died or returned without reaching it."""

    __module__ = "tierflow"


class ChipContext:
    """What a kernel knows about the chip it runs on (tf.ChipContext)."""

    __slots__ = ("chip_id", "group_rank", "group_size", "_port", "_barrier")

    def __init__(self, chip_id: int, port: "_core.ChildPort"):
        self.chip_id = chip_id
        self.group_rank = 0
        self.group_size = 1
        self._port = port
        self._barrier = 0

    def barrier(self) -> None:
        """Waits until every member of this group task reaches the barrier.
        Raises RuntimeError if another member failed, died or returned
        without reaching it (the round could never complete)."""
        if self.group_size <= 1:
            return
        if not self._port.barrier(self._barrier):
            raise BarrierBroken(
                f"barrier broken: another member of the group task failed, died or returned without reaching "
                f"the barrier (chip {self.chip_id}, group rank {self.group_rank} of {self.group_size})")

    def __repr__(self) -> str:
        return f"<tf.ChipContext chip {self.chip_id} rank {self.group_rank}/{self.group_size}>"


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the process that forked it dies. Only for
    children of the fork server: PR_SET_PDEATHSIG fires when the forking
    *thread* exits, and the server has exactly one thread."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


def close_fds_except(keep: Iterable[int]) -> None:
    """Closes every descriptor above stderr that is not in `keep`, and puts
    /dev/null on stdin: a forked tierflow process holds nothing of its
    parent's (a pipe to another program would never reach EOF)."""
    keep_sorted = sorted({fd for fd in keep if fd is not None and fd > 2})
    top = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    top = top if 0 < top < (1 << 30) else (1 << 20)
    lo = 3
    for fd in keep_sorted:
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, top)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _redirect_output(output: str, name: str, pipe_w: int) -> None:
    if output == "inherit":
        fd = -1
    elif output == "prefix":
        fd = pipe_w
    else:
        fd = os.open(os.path.join(output, name.replace(" ", "-") + ".log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if fd >= 0:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    # Whatever the parent's sys.stdout was (a test harness may have replaced
    # it), the child's Python output goes to its own fds 1 and 2.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _text(s: str) -> bytes:
    # backslashreplace: lone surrogates and the like become visible escapes
    # instead of an encoding error.
    return s.encode("utf-8", "backslashreplace")


def _short(line: str) -> str:
    if len(line) <= _MAX_LINE:
        return line
    half = _MAX_LINE // 2
    return f"{line[:half]} [... {len(line) - _MAX_LINE} characters omitted ...] {line[-half:]}"


def failure_report(exc: BaseException) -> Tuple[bytes, bytes, bytes, bytes]:
    """(message, traceback, class names, pickled exception) of a task's
    exception. Very long lines keep their head and tail; the engine keeps
    the tail of a very long traceback (the innermost frames and the
    exception line). Never raises."""
    try:
        message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        # The first frame is this loop's call into the task: not the user's.
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        tb = "".join(_short(line) for line in traceback.format_exception(type(exc), exc, frames))
        types = "|".join(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)
        try:
            pickled = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            if len(pickled) > _MAX_PICKLED_EXCEPTION:
                pickled = b""
        except Exception:  # unpicklable: the text still tells the story
            pickled = b""
        return _text(_short(message)), _text(tb), _text(types), pickled
    except BaseException:
        return b"TaskFailed: the task failed and its exception could not be described", b"", b"", b""


def _value_bytes(value, limit: int) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > limit:
        raise ValueError(f"the task returned a value of {len(data):,} bytes when pickled; a task can return at most "
                         f"{limit:,} bytes. Write large results into an output tensor (w.alloc) instead")
    return data


def reply(port: "_core.ChildPort", data: bytes, failure: Optional[Tuple[bytes, bytes, bytes, bytes]]) -> None:
    """Answers one request, after the task's output is flushed: its pickled
    value, or its failure record."""
    _flush()
    if failure is None:
        port.complete(data)
    else:
        port.fail(*failure)


def child_main(*, kind: str, index: int, parent_pid: int, mailbox: int, region, arena, ancestors: List,
               callables: List[Callable], output: str, pipe_w: int, template=None, out_path: str = "") -> None:
    """Runs in the forked child; never returns."""
    global root_out_fd
    code = 0
    try:
        die_with_parent(parent_pid)
        gc.enable()  # off in the fork server; tasks run with the usual collector
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops its children itself
        if template is not None and root_out_fd is None:
            root_out_fd = os.dup(2)  # the top level's stderr, for the nested levels' output
        close_fds_except(([pipe_w] if pipe_w >= 0 else []) + ([root_out_fd] if template is not None else []))
        if template is None:
            root_out_fd = None
        _redirect_output(output, f"{kind} {index}", pipe_w)
        # A crash in native code leaves the Python stack of the crash in the
        # child's output (its death is reported as worker_died regardless).
        faulthandler.enable(file=sys.stderr)
        # w.dump_stacks(): SIGUSR1 prints every thread's Python stack to the
        # child's output (faulthandler writes from the signal handler itself,
        # so a child stuck in native code or holding the GIL still answers).
        faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
        port = _core.ChildPort(region, arena, mailbox, index if kind == "chip" else -1)
        for a in ancestors:
            port.add_ancestor_arena(a)
        if template is not None and hasattr(template, "address"):  # a remote daemon (add_remote)
            from .remote.client import serve_remote
            serve_remote(port, template, callables, name=f"{kind} {index}")
            return
        if template is not None:
            from ._level import serve_next_level
            serve_next_level(port, template, callables, name=f"{kind} {index}", arena=arena, ancestors=ancestors,
                             out_fd=root_out_fd, out_path=f"{out_path}{kind} {index} ")
            return
        limit = _core.ChildPort.max_value_bytes
        for i, fn in enumerate(callables):
            if isinstance(fn, NativeKernel):
                port.add_native(i, fn.path, fn.symbol)
        chip: Optional[ChipContext] = ChipContext(index, port) if kind == "chip" else None
        while True:
            req = port.wait()
            if req is None:
                break
            callable_id, rank, size, barrier, args = req
            failure, data = None, b""
            try:
                fn = callables[callable_id]
                if isinstance(fn, NativeKernel):  # it reached this child at run time (a daemon's catalog)
                    port.add_native(callable_id, fn.path, fn.symbol)
                    _flush()
                    port.run_native(callable_id, rank, size, barrier, args)
                    del args
                    continue
                if chip is not None:
                    chip.group_rank, chip.group_size, chip._barrier = rank, size, barrier
                    value = fn(args, chip)
                else:
                    value = fn(args)
                data = b"" if value is None else _value_bytes(value, limit)
                del value
            except BaseException as exc:  # the task's failure, reported not raised
                failure = failure_report(exc)
            del args
            reply(port, data, failure)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        _flush()
        os._exit(code)
