"""A next-level worker: the body of a level-N Worker's child (N >= 4).

The child was forked from its parent's fork server with the parent's arena
(and the arenas above it) mapped. It turns its template into this process's
own level-(N-1) Worker, initialises it (its own fork server, children and
engine), and then serves its mailbox like a chip: each request names an orch
function and its TaskArgs. The function runs with the inner Worker's
default session as its Orchestrator; requests come one at a time, so the
drain after the function returned reports exactly that request's failures,
and the request completes once the function returned and everything it
submitted finished. Its value is the function's return value — or, when
the function returns a tf.Task of this level, that task's.

Answering: when the function returned a plain value, the request is
answered by the inner scheduler itself, the moment the last task the
function submitted finishes (ChildPort.complete_when_drained) — no wake-up
of this thread lies between the inner work and the parent. Failed work, a
returned tf.Task and the function's own exceptions are answered from here.

The task's tensors live in the parent's arena. They are lent to the inner
Worker for the duration of the request (its engine tracks them as
allocations of the level above and never frees them): the parent holds them
until its task completes, and it completes only after this loop answered.

A failure is reported with its path: the inner task's worker ("chip 1",
or "l3 0 › chip 1" one level deeper) after this worker's own name, the
root cause's message, traceback and exception (so retry_on= and
TaskError.__cause__ see the original exception at every level).
"""
from __future__ import annotations

import pickle
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from ._errors import Failure, TaskError
from ._task import Task
from ._child import failure_report, reply, _flush, _text, _value_bytes
from . import _core

_SEP = " › "


class LocalSpec:
    """What add_worker() records for one next-level child: the template its
    Worker is built from (one template may be added several times, each a
    child of its own), and — set at init() — where that child answers
    stats() and writes its part of a trace."""

    def __init__(self, template: Any):
        self.template = template
        self._stats_address = ""
        self._trace_part: Optional[str] = None

    @property
    def name(self) -> str:
        return self.template.name

    def __repr__(self) -> str:
        return f"<next-level child from template {self.template.name}>"


def root_failure(failures: List[Failure]) -> Failure:
    """The failure a user wants to see: the first that is not only a
    consequence of another (dependents carry the root's text anyway)."""
    for f in failures:
        if f.kind != "dependency_failed":
            return f
    return failures[0]


def inner_report(err: TaskError) -> Tuple[str, str, str, str, bytes]:
    """(kind, message, traceback, class names, pickled exception) of a
    level's failed tasks, as one failure to report one level up: the root
    cause, its message starting with the path of the worker it failed on
    ("chip 1: ValueError: ..."; one level deeper "l3 0 › chip 1: ...")."""
    f = root_failure(err.failures)
    inner = f.worker or "?"
    message = f.message if f.message.startswith(inner + _SEP) else f"{inner}: {f.message}"
    if f.kind not in ("exception", "dependency_failed"):
        message += f" ({f.kind})"
    if len(err.failures) > 1:
        message += f" [and {len(err.failures) - 1} more failure(s) on this level]"
    cause = err.__cause__
    types, pickled = "", b""
    if isinstance(cause, BaseException) and type(cause).__name__ != "RemoteTraceback":
        types = "|".join(f"{c.__module__}.{c.__qualname__}" for c in type(cause).__mro__)
        try:
            pickled = pickle.dumps(cause, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pickled = b""
    return f.kind, message, f.traceback or "", types, pickled


def nested_report(name: str, err: TaskError) -> Tuple[bytes, bytes, bytes, bytes]:
    """(message, traceback, class names, pickled exception) for a request
    whose inner tasks failed: the message starts with this worker's name,
    then the path below it (inner_report)."""
    try:
        _kind, message, tb, types, pickled = inner_report(err)
        return _text(f"{name}{_SEP}{message}"), _text(tb), _text(types), pickled
    except BaseException:
        return _text(f"{name}: a task of this level failed and its failure could not be described"), b"", b"", b""


_LEN = struct.Struct("=I")


def _answer_stats(inner: Any, address: Optional[str]) -> None:
    """Answers the parent's stats() questions from a thread of this process:
    an abstract-namespace Unix socket (no file, gone with the process),
    started after the inner Worker forked everything it will fork (its fork
    server forks replacements from then on), so no fork sees this thread."""
    if not address:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(50):  # a dead predecessor's name frees once it is reaped
        try:
            sock.bind(address)
            break
        except OSError:
            time.sleep(0.02)
    else:
        sock.close()
        return
    sock.listen(4)

    def serve() -> None:
        while True:
            conn, _ = sock.accept()
            with conn:
                try:
                    data = pickle.dumps(inner.stats())
                except Exception as e:  # closing, or a deeper level gone: say so
                    data = pickle.dumps({"error": str(e)})
                conn.sendall(_LEN.pack(len(data)) + data)

    threading.Thread(target=serve, name="tierflow-stats", daemon=True).start()


def _connect(address: str, timeout: float) -> socket.socket:
    """Connects, waiting while the child is still initialising its Worker
    (its name is not bound yet) for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
            return s
        except (ConnectionRefusedError, FileNotFoundError):
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def inner_stats(address: str, timeout: float = 5.0) -> Optional[dict]:
    """The parent's side: the stats() of the next-level Worker at `address`."""
    try:
        with _connect(address, timeout) as s:
            head = b""
            while len(head) < _LEN.size:
                chunk = s.recv(_LEN.size - len(head))
                if not chunk:
                    return None
                head += chunk
            (n,) = _LEN.unpack(head)
            body = bytearray()
            while len(body) < n:
                chunk = s.recv(min(1 << 16, n - len(body)))
                if not chunk:
                    return None
                body += chunk
        return pickle.loads(bytes(body))
    except (OSError, pickle.UnpicklingError, EOFError):
        return None


def _finish_quietly(orch) -> None:
    """Waits for everything the session has outstanding and drops its
    failures (the request already failed with the first one)."""
    try:
        orch.drain()
    except TaskError:
        pass


def serve_next_level(port: "_core.ChildPort", spec: LocalSpec, orch_fns: List[Callable], *, name: str, arena,
                     ancestors: List[Any], out_fd: Optional[int], out_path: str) -> None:
    inner = spec.template._adopt(ancestors=[arena, *ancestors], out_fd=out_fd if out_fd is not None else 2,
                                 out_path=out_path)
    inner._trace_part = spec._trace_part
    inner.init()
    engine = inner._engine
    _answer_stats(inner, spec._stats_address)
    limit = _core.ChildPort.max_value_bytes
    orch = inner._default_session  # one session serves the requests one at a time
    try:
        while True:
            req = port.wait()
            if req is None:
                break
            callable_id, _rank, _size, _barrier, args = req
            failure = None
            data = b""
            answered = False
            engine.lend(args)
            try:
                value = orch_fns[callable_id](orch, args)
                if isinstance(value, Task):  # `return orch.submit_...(...)`: that task's value
                    orch.drain()
                    value = value.result()
                data = b"" if value is None else _value_bytes(value, limit)
                del value
                _flush()
                # The inner scheduler answers the parent the moment the
                # function's work has finished, ending the loan first; work
                # that failed is left to be reported from here.
                answered = port.complete_when_drained(orch._core, data)
                if not answered:
                    orch.drain()  # raises the failures
            except TaskError as err:
                failure = nested_report(name, err)
            except BaseException as exc:  # the orch function's own failure
                failure = failure_report(exc)
            finally:
                # Nothing may touch the lent tensors once the parent hears
                # back: whatever the function submitted has finished (its
                # failures, if the function raised first, go with its own).
                if failure is not None:
                    _finish_quietly(orch)
                if not answered:
                    engine.end_loan()
            del args
            if not answered:
                reply(port, data, failure)
    finally:
        inner.close(cancel=True)
