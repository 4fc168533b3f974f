"""Forking the children of a level-3 Worker.

Everything here runs before the Worker's engine threads exist: the arena and
the control region are mapped first (so every child sees them at the same
address), stdio is flushed (so buffered parent output is not written twice),
then each child is forked. Only after the last fork does the Worker build the
C++ engine, whose constructor starts the scheduler, reaper and output-pump
threads.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, Dict, List, Set, Tuple

from . import _core
from ._child import child_main

# Parent-side descriptors of every live Worker in this process (pipe read
# ends, pidfds). A child closes them all, so no pipe stays open in a process
# that does not own it and every pump sees EOF when its own child exits.
_parent_fds: Set[int] = set()
_fds_lock = threading.Lock()

SUB, CHIP = 0, 1


def forget_fds(fds) -> None:
    with _fds_lock:
        for fd in fds:
            _parent_fds.discard(fd)


def fork_children(*, subs: int, chips: int, region, arena, sub_fns: List[Callable],
                  kernel_fns: List[Callable], output: str) -> Tuple[list, Dict[str, int], List[int]]:
    """Forks every child; returns (engine child specs, {name: pid}, parent fds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    specs, pids, fds = [], {}, []
    plan = [(SUB, "sub", i, sub_fns) for i in range(subs)] + [(CHIP, "chip", i, kernel_fns) for i in range(chips)]
    parent = os.getpid()
    try:
        for mailbox, (kind, name, index, fns) in enumerate(plan):
            r = w = -1
            if output == "prefix":
                r, w = os.pipe()
            with _fds_lock:
                inherited = set(_parent_fds)
            pid = os.fork()
            if pid == 0:  # child: never returns
                if r >= 0:
                    os.close(r)
                child_main(kind=name, index=index, parent_pid=parent, mailbox=mailbox, region=region,
                           arena=arena, callables=fns, output=output, pipe_w=w, close_fds=inherited)
            if w >= 0:
                os.close(w)
            pidfd = os.pidfd_open(pid)
            with _fds_lock:
                _parent_fds.add(pidfd)
                if r >= 0:
                    _parent_fds.add(r)
            fds += [pidfd] + ([r] if r >= 0 else [])
            pids[f"{name} {index}"] = pid
            specs.append((kind, index, pid, pidfd, r))
    except BaseException:
        kill_and_reap(specs)
        forget_fds(fds)
        for fd in fds:
            os.close(fd)
        raise
    return specs, pids, fds


def kill_and_reap(specs) -> None:
    """Used only when init() fails before the engine owns the children."""
    for _kind, _index, pid, _pidfd, _r in specs:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
