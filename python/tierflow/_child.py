"""The body of a forked child process: a chip or a sub-worker.

A child never returns into the parent's code: it serves requests from its
mailbox until asked to exit, then leaves with os._exit so no atexit handler,
finalizer or buffered parent output runs twice.
"""
from __future__ import annotations

import ctypes
import io
import os
import signal
import sys
import traceback
from typing import Callable, Iterable, List, Optional

from . import _core
from .native import NativeKernel

_PR_SET_PDEATHSIG = 1


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
        Raises RuntimeError if another member failed or died."""
        if self.group_size <= 1:
            return
        if not self._port.barrier(self._barrier):
            raise RuntimeError(
                f"barrier broken: another member of the group task failed or died "
                f"(chip {self.chip_id}, group rank {self.group_rank} of {self.group_size})")

    def __repr__(self) -> str:
        return f"<tf.ChipContext chip {self.chip_id} rank {self.group_rank}/{self.group_size}>"


def die_with_parent(parent_pid: int) -> None:
    """Dies (SIGKILL) when the process that forked this one dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    # The parent may have died before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(1)


def _redirect_output(output: str, name: str, pipe_w: int) -> None:
    if output == "inherit":
        return
    if output == "prefix":
        fd = pipe_w
    else:
        fd = os.open(os.path.join(output, name.replace(" ", "-") + ".log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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


def child_main(*, kind: str, index: int, parent_pid: int, mailbox: int, region, arena,
               callables: List[Callable], output: str, pipe_w: int, close_fds: Iterable[int]) -> None:
    """Runs in the forked child; never returns."""
    code = 0
    try:
        die_with_parent(parent_pid)
        # Ctrl-C is the parent's to handle; it stops children itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for fd in close_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        _redirect_output(output, f"{kind} {index}", pipe_w)
        port = _core.ChildPort(region, arena, mailbox, index if kind == "chip" else -1)
        for i, fn in enumerate(callables):
            if isinstance(fn, NativeKernel):
                port.add_native(i, fn.path, fn.symbol)
        chip: Optional[ChipContext] = ChipContext(index, port) if kind == "chip" else None
        while True:
            req = port.wait()
            if req is None:
                break
            callable_id, rank, size, barrier, args = req
            try:
                fn = callables[callable_id]
                if chip is not None:
                    chip.group_rank, chip.group_size, chip._barrier = rank, size, barrier
                    fn(args, chip)
                else:
                    fn(args)
                ok, text = True, ""
            except BaseException:  # the task's failure, reported not raised
                ok, text = False, traceback.format_exc()
            del args
            _flush()
            port.complete(ok, text)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        _flush()
        os._exit(code)
