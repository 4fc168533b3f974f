"""`tierflow daemon`: one persistent level-3 Worker served over gRPC.

    tierflow daemon --listen 127.0.0.1:7070 --chips 4 --sub-workers 2 --token-file ~/.tierflow/token

Order matters, because gRPC does not survive fork:
  1. read the arguments, the token and the TLS files (no gRPC yet);
  2. build and start the level-3 Worker: its arena, a shared heap for the
     callables clients will send, its fork server and children (every later
     replacement comes from that fork server, never from this process);
  3. only now import gRPC, create the server, register the health service
     (NOT_SERVING), bind;
  4. mark SERVING and write --ready-file (atomically: a temporary file
     renamed);
  5. serve until SIGTERM: stop accepting, let running tasks finish for
     --grace seconds, close the Worker, remove the ready file.
This process never forks after step 3, and user orch functions that run in
it must not fork either (docs/remote.md).

Every client is its own session of the Worker: fair shares of workers and
window slots, its own failures. The session lives as long as the client's
Attach call; when that ends (the client went away) its unfinished work is
cancelled and its memory freed.
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import pickle
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import wire
from .catalog import Catalog, RuntimeCallables, SharedHeap, install

log = logging.getLogger("tierflow.daemon")

DEFAULT_LISTEN = "127.0.0.1:7070"
DEFAULT_TOKEN_FILE = os.path.join("~", ".tierflow", "daemon.token")
MAX_SESSIONS = 64
MAX_STAGED = 4096          # staged tensors per session at most
ATTACH_DEADLINE_S = 30.0   # a session nobody attaches to within this is closed


class DaemonError(RuntimeError):
    """The daemon cannot start as asked (the message says how to fix it)."""


# -- step 1: arguments and files ---------------------------------------

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tierflow daemon", description="Serve one level-3 tierflow Worker to "
                                "level-4 Workers on other hosts (docs/remote.md).")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free port, written to "
                        f"--ready-file). A non-loopback address needs --tls-cert/--tls-key or --insecure")
    p.add_argument("--chips", type=int, default=0)
    p.add_argument("--sub-workers", type=int, default=0)
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--arena-bytes", type=int, default=1 << 30)
    p.add_argument("--catalog-bytes", type=int, default=64 << 20,
                   help="shared memory for the callables clients send (default 64 MiB)")
    p.add_argument("--token-file", default=None,
                   help=f"file holding the token clients must present (default {DEFAULT_TOKEN_FILE}); created "
                        f"with a new random token, mode 0600, when it is missing or empty")
    p.add_argument("--ready-file", default=None, help="written (atomically, JSON) once the daemon serves")
    p.add_argument("--data-port", type=int, default=0,
                   help="port of the bulk channel for tensors above 1 MiB, on the --listen host (default 0: any "
                        "free port, reported to clients; -1: none, large tensors stream over gRPC)")
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain of this daemon")
    p.add_argument("--tls-key", default=None, help="PEM private key of this daemon")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback address without TLS: tokens and tensors cross the network in "
                        "plaintext (only for a trusted, isolated network)")
    p.add_argument("--grace", type=float, default=30.0,
                   help="seconds running tasks get to finish after SIGTERM (default 30)")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS)
    p.add_argument("--output", default="prefix", help="where the children's output goes: prefix, inherit or a "
                                                      "directory (as tf.Worker's output=)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def read_token(path: Optional[str]) -> Tuple[str, str]:
    """(token, path): the file's contents without surrounding whitespace;
    a missing or empty file gets a new random token, written with mode 0600."""
    path = os.path.abspath(os.path.expanduser(path or DEFAULT_TOKEN_FILE))
    try:
        with open(path) as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = ""
    except OSError as e:
        raise DaemonError(f"cannot read the token file {path}: {e}") from None
    if token:
        mode = os.stat(path).st_mode & 0o077
        if mode:
            log.warning("the token file %s is readable by others (mode %o); chmod 600 it", path, os.stat(path).st_mode
                        & 0o777)
        return token, path
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    log.info("generated a new token into %s (mode 0600): pass its contents to add_remote(..., token=)", path)
    return token, path


def check_security(host: str, tls: bool, insecure: bool) -> str:
    """The transport mode for this address: "local", "tls" or "insecure"."""
    if tls:
        return "tls"
    if wire.is_loopback(host):
        return "local"
    if insecure:
        return "insecure"
    raise DaemonError(f"refusing to listen on {host}, which is not a loopback address, without TLS: the token and "
                      f"every tensor would cross the network in plaintext. Pass --tls-cert and --tls-key, or "
                      f"--insecure if the network is trusted and isolated")


def write_atomically(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tierflow-ready-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- step 2: the Worker --------------------------------------------------

def start_worker(args: argparse.Namespace):
    from ..worker import Worker
    w = Worker(level=3, chips=args.chips, sub_workers=args.sub_workers, window=args.window,
               arena_bytes=args.arena_bytes, output=args.output, name="daemon")
    heap = SharedHeap(args.catalog_bytes)
    subs = RuntimeCallables(heap, 0, "sub-workers")
    kernels = RuntimeCallables(heap, 1, "chips")
    # The children index these lists; they grow as clients push callables.
    w._sub_fns = subs
    w._kernel_fns = kernels
    w._trace_record = True  # each client's trace gets its session's runs (Trace)
    w.init()
    catalog = Catalog(w, heap, subs, kernels)
    install(catalog)
    return w, catalog


# -- the service ----------------------------------------------------------

class ClientSession:
    """One client's session and the tensors it staged."""

    def __init__(self, sid: str, session: Any, peer: str):
        self.id = sid
        self.session = session
        self.peer = peer
        self.opened = time.monotonic()
        self.attached = False
        self.gone = threading.Event()
        self.run_lock = threading.Lock()
        self.staged_in: Dict[str, np.ndarray] = {}
        self.staged_out: Dict[str, np.ndarray] = {}
        self.lock = threading.Lock()

    def drop_staged(self) -> None:
        with self.lock:
            self.staged_in.clear()
            self.staged_out.clear()


class Service:
    """The Daemon service's methods (registered by build_server)."""

    def __init__(self, worker: Any, catalog: Catalog, grpc_mod: Any, pb: Any, *, max_sessions: int, mode: str,
                 token_path: str):
        self.w = worker
        self.catalog = catalog
        self.grpc = grpc_mod
        self.pb = pb
        self.max_sessions = max_sessions
        self.mode = mode
        self.token_path = token_path
        self.sessions: Dict[str, ClientSession] = {}
        self.lock = threading.Lock()
        self.started = time.time()
        self.state = "starting"
        self.address = ""
        self.opened = 0
        self.refused = 0  # calls refused for a wrong or missing token
        self.data_port = 0  # the bulk channel's (data_channel.py), once it listens
        self.data_server = None

    # helpers
    def _abort(self, context, code: str, message: str):
        context.abort(getattr(self.grpc.StatusCode, code), message)

    def _session(self, sid: str, context) -> ClientSession:
        with self.lock:
            cs = self.sessions.get(sid)
        if cs is None:
            self._abort(context, "NOT_FOUND", f"unknown session {sid[:12]!r}: it was never opened, or it closed when "
                                              f"its client's Attach call ended")
        return cs

    # -- Hello / catalog / sessions
    def Hello(self, request, context):
        v = wire.versions()
        alive = self.w._live_engine().stats()["alive"]
        return self.pb.HelloReply(
            daemon=self.pb.Versions(**v), chips=self.w._chips, sub_workers=self.w._subs,
            chips_alive=sum(1 for k, a in alive.items() if k.startswith("chip") and a),
            sub_workers_alive=sum(1 for k, a in alive.items() if k.startswith("sub") and a),
            max_inline_bytes=wire.MAX_INLINE_BYTES, chunk_bytes=wire.CHUNK_BYTES, arena_bytes=self.w._arena_bytes,
            host=socket.gethostname(), data_port=self.data_port)

    def Has(self, request, context):
        keys = list(request.keys)
        if len(keys) > 65536 or any(len(k) != 32 for k in keys):
            self._abort(context, "INVALID_ARGUMENT", "Has takes at most 65,536 keys of 32 bytes (sha256)")
        return self.pb.HasReply(missing=self.catalog.missing(keys))

    def Push(self, request, context):
        kinds = {1: "sub", 2: "kernel", 3: "native", 4: "orch"}
        kind = kinds.get(request.kind)
        if kind is None:
            self._abort(context, "INVALID_ARGUMENT", f"unknown callable kind {request.kind}")
        if len(request.key) != 32:
            self._abort(context, "INVALID_ARGUMENT", "a catalog key is the 32-byte sha256 of kind, NUL, payload")
        try:
            key, stored = self.catalog.push(kind, bytes(request.key), bytes(request.payload), request.name[:200])
        except ValueError as e:
            self._abort(context, "INVALID_ARGUMENT", str(e))
        except MemoryError as e:
            self._abort(context, "RESOURCE_EXHAUSTED", str(e))
        if stored:
            log.info("catalog: stored %s %s (%s, %d bytes)", kind, request.name[:80], key.hex()[:12],
                     len(request.payload))
        return self.pb.PushReply(key=key, stored=stored)

    def OpenSession(self, request, context):
        if request.chips > self.w._chips or request.sub_workers > self.w._subs:
            self._abort(context, "FAILED_PRECONDITION",
                        f"the template needs {request.chips} chip(s) and {request.sub_workers} sub-worker(s); this "
                        f"daemon has {self.w._chips} and {self.w._subs} (start it with more --chips/--sub-workers, "
                        f"or add a smaller template)")
        weight = request.weight or 1
        if not 1 <= weight <= 1_000_000:
            self._abort(context, "INVALID_ARGUMENT", f"weight must be between 1 and 1,000,000, got {weight}")
        with self.lock:
            if self.state != "serving":
                self._abort(context, "UNAVAILABLE", f"the daemon is {self.state}")
            if len(self.sessions) >= self.max_sessions:
                self._abort(context, "RESOURCE_EXHAUSTED", f"the daemon serves at most {self.max_sessions} sessions "
                                                           f"(--max-sessions)")
            self.opened += 1
            sid = secrets.token_hex(16)
            label = (request.name or "client")[:100]
            s = self.w.session(f"{label} #{self.opened}", int(weight))
            cs = ClientSession(sid, s, context.peer())
            self.sessions[sid] = cs
        log.info("session %s opened for %s (%s)", s.name, cs.peer, sid[:8])
        return self.pb.OpenReply(session=sid)

    def Attach(self, request, context):
        cs = self._session(request.session, context)
        if request.interval_s != request.interval_s:  # NaN: wait(NaN) returns at once, a busy loop of beats
            self._abort(context, "INVALID_ARGUMENT", "Attach: interval_s is NaN; send the beat interval in seconds")
        cs.attached = True
        interval = min(max(request.interval_s or 1.0, 0.05), 5.0)
        context.add_callback(cs.gone.set)
        seq = 0
        try:
            while not cs.gone.is_set() and context.is_active():
                if self.state == "draining" and not cs.run_lock.locked():
                    break  # stopping: a session with nothing running ends now, so stop() need not wait
                yield self.pb.Beat(seq=seq, state=self.state)
                seq += 1
                cs.gone.wait(interval)
        finally:
            self._close_session(cs, "its client went away")

    def _close_session(self, cs: ClientSession, why: str) -> None:
        with self.lock:
            if self.sessions.pop(cs.id, None) is None:
                return
        cs.gone.set()
        try:
            cs.session._core.cancel_pending(f"the session closed: {why}", 0.5)
        except Exception:
            pass
        with cs.run_lock:  # a Run in progress sees its tasks cancelled and returns
            try:
                cs.session.close(cancel=True)
            except Exception:
                log.exception("closing session %s", cs.session.name)
        cs.drop_staged()
        log.info("session %s closed: %s", cs.session.name, why)

    def sweep(self) -> None:
        """Closes sessions nobody attached to in time."""
        now = time.monotonic()
        with self.lock:
            stale = [cs for cs in self.sessions.values() if not cs.attached and now - cs.opened > ATTACH_DEADLINE_S]
        for cs in stale:
            self._close_session(cs, f"no Attach call within {ATTACH_DEADLINE_S:.0f} s")

    # -- tensors
    def Upload(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        cs = self._session(md.get("tierflow-session", ""), context)
        try:
            nbytes = int(md.get("tierflow-nbytes", "-1"))
        except ValueError:
            nbytes = -1
        if not 0 < nbytes <= self.w._arena_bytes:
            self._abort(context, "INVALID_ARGUMENT", f"Upload needs tierflow-nbytes metadata between 1 and the "
                                                     f"arena's {self.w._arena_bytes:,} bytes")
        with cs.lock:
            if len(cs.staged_in) + len(cs.staged_out) >= MAX_STAGED:
                self._abort(context, "RESOURCE_EXHAUSTED", f"a session stages at most {MAX_STAGED} tensors")
        try:
            buf = self.w.alloc(nbytes, np.uint8)
        except MemoryError as e:
            self._abort(context, "RESOURCE_EXHAUSTED", str(e))
        try:
            got = wire.into(buf, (wire.chunk_data(m) for m in request_iterator))
        except wire.WireError as e:
            self._abort(context, "INVALID_ARGUMENT", f"Upload: {e}")
        if got != nbytes:
            self._abort(context, "INVALID_ARGUMENT", f"Upload: the stream ended after {got:,} of {nbytes:,} bytes")
        sid = secrets.token_hex(8)
        with cs.lock:
            cs.staged_in[sid] = buf
        return self.pb.UploadReply(staged=sid, nbytes=nbytes)

    def Download(self, request, context):
        cs = self._session(request.session, context)
        with cs.lock:
            arr = cs.staged_out.pop(request.staged, None)
        if arr is None:
            self._abort(context, "NOT_FOUND", f"no staged output {request.staged[:16]!r} (each is fetched once)")
        yield from wire.chunks_of(arr)

    # -- running
    def _args(self, cs: ClientSession, request, context):
        from .._core import TaskArgs
        if len(request.tensors) > wire.MAX_TENSORS or len(request.scalars) > wire.MAX_TENSORS:
            raise wire.WireError(f"a task has at most {wire.MAX_TENSORS} tensors and scalars")
        args = TaskArgs()
        arrays: List[Tuple[int, np.ndarray]] = []
        for i, t in enumerate(request.tensors):
            dt, dims = wire.check_tensor(t.tag, t.dtype, t.shape, t.nbytes, self.w._arena_bytes)
            source = t.WhichOneof("source")
            if t.tag == 2 and source is not None:
                raise wire.WireError(f"tensor {i} is an output: its old bytes are never sent")
            if source == "staged":
                with cs.lock:
                    buf = cs.staged_in.pop(t.staged, None)
                if buf is None or buf.nbytes != t.nbytes:
                    raise wire.WireError(f"tensor {i}: no staged upload {t.staged[:16]!r} of {t.nbytes} bytes")
                arr = buf.view(dt).reshape(dims)
            else:
                try:
                    arr = self.w.alloc(dims, dt)
                except (TypeError, ValueError) as e:  # e.g. a 0-byte shape with a dimension past numpy's limit
                    raise wire.WireError(f"tensor {i}: {e}") from None
                if t.tag != 2:
                    if source != "data" or len(t.data) != t.nbytes:
                        raise wire.WireError(f"tensor {i} ({wire.TAGS[t.tag]}) must carry its {t.nbytes} bytes "
                                             f"(inline or staged)")
                    if t.nbytes:
                        arr.reshape(-1).view(np.uint8)[:] = np.frombuffer(t.data, dtype=np.uint8)
            try:
                getattr(args, wire.TAGS[t.tag])(arr)
            except (TypeError, ValueError) as e:  # a dtype, byte order or rank the engine does not take
                raise wire.WireError(f"tensor {i}: {e}") from None
            arrays.append((t.tag, arr))
        for s in request.scalars:
            which = s.WhichOneof("value")
            if which is None:
                raise wire.WireError("a scalar must hold an int or a float")
            args.scalar(s.i if which == "i" else s.f)
        return args._as_received(), arrays

    def Run(self, request, context):
        from .._errors import TaskError
        from .._task import Task
        cs = self._session(request.session, context)
        if not cs.run_lock.acquire(blocking=False):
            self._abort(context, "FAILED_PRECONDITION", "this session already runs a task: a client sends one task "
                                                        "at a time")
        try:
            try:
                fn = self.catalog.orch(bytes(request.orch))
            except LookupError as e:
                self._abort(context, "FAILED_PRECONDITION", str(e))
            except ImportError as e:
                return self._failure("exception", f"{e}", e)
            try:
                args, arrays = self._args(cs, request, context)
            except wire.WireError as e:
                self._abort(context, "INVALID_ARGUMENT", f"Run: {e}")
            except MemoryError as e:
                return self._failure("exception", f"MemoryError: {e}", e)
            orch = cs.session
            try:
                value = fn(orch, args)
                orch.drain()
                if isinstance(value, Task):
                    value = value.result()
                data = b"" if value is None else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                del value
            except TaskError as err:
                _finish_quietly(orch)
                return self._nested(err)
            except BaseException as exc:
                _finish_quietly(orch)
                from .._child import failure_report
                m, tb, types, pickled = failure_report(exc)
                return self.pb.RunReply(ok=False, failure=self.pb.Failure(
                    kind="exception", message=m.decode("utf-8", "replace"), traceback=tb.decode("utf-8", "replace"),
                    types=types.decode(), exception=pickled))
            if len(data) > wire.MAX_INLINE_TOTAL:
                return self._failure("exception", f"ValueError: the orch function returned a value of {len(data):,} "
                                                  f"bytes when pickled; write large results into output tensors",
                                     None)
            outputs = []
            for i, (tag, arr) in enumerate(arrays):
                if tag == 1:
                    continue
                if arr.nbytes <= wire.MAX_INLINE_BYTES:
                    outputs.append(self.pb.Output(index=i, data=bytes(wire.contiguous_bytes(arr))))
                else:
                    sid = secrets.token_hex(8)
                    with cs.lock:
                        cs.staged_out[sid] = arr
                    outputs.append(self.pb.Output(index=i, staged=sid))
            return self.pb.RunReply(ok=True, value=data, outputs=outputs)
        finally:
            cs.run_lock.release()

    def _failure(self, kind: str, message: str, exc: Optional[BaseException]):
        return self.pb.RunReply(ok=False, failure=self.pb.Failure(kind=kind, message=message))

    def _nested(self, err) -> Any:
        from .._level import root_failure
        f = root_failure(err.failures)
        message = f.message
        inner = f.worker or "?"
        if not message.startswith(inner + " › "):
            message = f"{inner}: {message}"
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
        return self.pb.RunReply(ok=False, failure=self.pb.Failure(kind=f.kind, message=message,
                                                                  traceback=f.traceback or "", types=types,
                                                                  exception=pickled))

    # -- reports
    def readiness(self) -> Dict[str, Any]:
        s = self.w._live_engine().stats() if self.w._engine is not None else {"alive": {}}
        alive = s.get("alive", {})
        arena = self.w._arena
        with self.lock:
            sessions = len(self.sessions)
        return {
            "state": self.state, "address": self.address, "pid": os.getpid(), "host": socket.gethostname(),
            "uptime_s": round(time.time() - self.started, 3), "versions": wire.versions(),
            "chips": {"configured": self.w._chips,
                      "alive": sum(1 for k, a in alive.items() if k.startswith("chip") and a)},
            "sub_workers": {"configured": self.w._subs,
                            "alive": sum(1 for k, a in alive.items() if k.startswith("sub") and a)},
            "restarts": s.get("restarts", 0),
            "arena": {"bytes": self.w._arena_bytes,
                      "free_bytes": self.w._arena_bytes - (arena.bytes_in_use if arena is not None else 0)},
            "window": self.w._window, "live_slots": s.get("live_tasks", 0), "queue_depth": s.get("queue_depth", 0),
            "sessions": sessions, "catalog": self.catalog.stats(),
            "auth": {"token": True, "transport": self.mode, "token_file": self.token_path},
            "refused_calls": self.refused + (self.data_server.refused if self.data_server is not None else 0),
            "data_port": self.data_port,
        }

    def Ready(self, request, context):
        return self.pb.ReadyReply(json=json.dumps(self.readiness()))

    def Trace(self, request, context):
        from .. import _tracefile
        cs = self._session(request.session, context)
        engine = self.w._engine
        snap = engine.trace_snapshot() if engine is not None else None
        label = f"{self.address} (daemon, level 3)"
        if snap is None:
            proc = {"label": label, "threads": [], "slices": [], "edges": [], "dropped": 0}
        else:
            proc = _tracefile.session_process(label, snap, cs.session.name)
        return self.pb.TraceReply(json=json.dumps(proc), daemon_now_ns=time.monotonic_ns())

    def Stats(self, request, context):
        out: Dict[str, Any] = {"worker": self.w.stats()}
        if request.session:
            cs = self._session(request.session, context)
            out["session"] = cs.session.stats()
        return self.pb.StatsReply(json=json.dumps(out, default=str))


def _finish_quietly(orch) -> None:
    from .._errors import TaskError
    try:
        orch.drain()
    except TaskError:
        pass
    except Exception:
        pass


# -- step 3: gRPC ----------------------------------------------------------

def build_server(service: Service, token: str, *, max_workers: int):
    import grpc
    from . import tierflow_remote_pb2 as pb

    expected = ("Bearer " + token).encode()
    unauthenticated = ("tierflow daemon: missing or wrong token; pass the contents of the daemon's token file as "
                       "add_remote(..., token=...)")

    class TokenCheck(grpc.ServerInterceptor):
        """Every call but the health service presents the token; checked in
        constant time before the request is read (or unpickled)."""

        def intercept_service(self, continuation, details):
            if details.method.startswith("/grpc.health.v1.Health/"):
                return continuation(details)
            given = ""
            for k, v in details.invocation_metadata or ():
                if k == wire.AUTH_KEY:
                    given = v
            ok = hmac.compare_digest(given.encode("utf-8", "replace"), expected)
            handler = continuation(details)
            if ok or handler is None:
                return handler
            with service.lock:
                service.refused += 1
            return _deny(grpc, handler, details.method, unauthenticated)

    S = service

    def parsed(fn, req, streaming=False):
        """fn with its request parsed here: a message that does not parse is
        INVALID_ARGUMENT (gRPC's own deserializer answers INTERNAL and logs
        a traceback for each)."""
        def parse(raw, context):
            try:
                return req.FromString(raw)
            except Exception as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a {req.DESCRIPTOR.full_name} message: {e}")

        if streaming:
            def stream(raw, context):
                yield from fn(parse(raw, context), context)
            return stream
        return lambda raw, context: fn(parse(raw, context), context)

    unary = lambda fn, req, rep: grpc.unary_unary_rpc_method_handler(  # noqa: E731
        parsed(fn, req), response_serializer=rep.SerializeToString)
    handlers = {
        "Hello": unary(S.Hello, pb.HelloRequest, pb.HelloReply),
        "Has": unary(S.Has, pb.HasRequest, pb.HasReply),
        "Push": unary(S.Push, pb.PushRequest, pb.PushReply),
        "OpenSession": unary(S.OpenSession, pb.OpenRequest, pb.OpenReply),
        "Attach": grpc.unary_stream_rpc_method_handler(parsed(S.Attach, pb.AttachRequest, streaming=True),
                                                        response_serializer=pb.Beat.SerializeToString),
        "Run": unary(S.Run, pb.RunRequest, pb.RunReply),
        # Chunks are read and written as raw serialised messages (one copy
        # each way instead of a protobuf object per megabyte).
        "Upload": grpc.stream_unary_rpc_method_handler(S.Upload, request_deserializer=None,
                                                       response_serializer=pb.UploadReply.SerializeToString),
        "Download": grpc.unary_stream_rpc_method_handler(parsed(S.Download, pb.DownloadRequest, streaming=True),
                                                         response_serializer=None),
        "Ready": unary(S.Ready, pb.ReadyRequest, pb.ReadyReply),
        "Stats": unary(S.Stats, pb.StatsRequest, pb.StatsReply),
        "Trace": unary(S.Trace, pb.TraceRequest, pb.TraceReply),
    }
    from concurrent.futures import ThreadPoolExecutor
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tierflow-rpc"),
        interceptors=[TokenCheck()],
        options=[("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
                 ("grpc.so_reuseport", 0),
                 ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                 ("grpc.keepalive_permit_without_calls", 1),
                 ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
                 ("grpc.http2.max_ping_strikes", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(wire.SERVICE, handlers),))
    return server, pb


def _deny(grpc, handler, method: str, message: str):
    def abort(request_or_iterator, context):
        log.warning("refused %s from %s: missing or wrong token", method, context.peer())
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def abort_stream(request_or_iterator, context):
        abort(request_or_iterator, context)
        yield  # pragma: no cover - abort raises

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream)
    return grpc.unary_unary_rpc_method_handler(abort)


# -- the whole daemon --------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s tierflow daemon[%(process)d] %(levelname)s %(message)s")
    try:
        return _serve(args)
    except DaemonError as e:
        log.error("%s", e)
        return 2


def _serve(args: argparse.Namespace) -> int:
    # 1. arguments and files
    try:
        host, port = wire.split_address(args.listen)
    except ValueError as e:
        raise DaemonError(f"--listen: {e}") from None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise DaemonError("TLS needs both --tls-cert and --tls-key")
    mode = check_security(host, bool(args.tls_cert), args.insecure)
    tls_pair = None
    if mode == "tls":
        try:
            with open(args.tls_key, "rb") as f:
                key = f.read()
            with open(args.tls_cert, "rb") as f:
                cert = f.read()
        except OSError as e:
            raise DaemonError(f"cannot read the TLS files: {e}") from None
        tls_pair = (key, cert)
    token, token_path = read_token(args.token_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # 2. the Worker: every process this daemon will ever have is forked here
    try:
        worker, catalog = start_worker(args)
    except (ValueError, TypeError, MemoryError) as e:
        raise DaemonError(f"cannot start the level-3 Worker: {e}") from None

    # 3. gRPC, only now
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"  # no atfork handlers: this process never forks again
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from . import tierflow_remote_pb2 as pb
    service = Service(worker, catalog, grpc, pb, max_sessions=args.max_sessions, mode=mode, token_path=token_path)
    server, _ = build_server(service, token, max_workers=2 * args.max_sessions + 8)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", wire.SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if mode == "tls":
            bound = server.add_secure_port(bind, grpc.ssl_server_credentials([tls_pair]))
        elif mode == "local":
            bound = server.add_secure_port(bind, grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP))
        else:
            bound = server.add_insecure_port(bind)
    except RuntimeError as e:
        worker.close(cancel=True)
        raise DaemonError(f"cannot listen on {args.listen}: {e}") from None
    if not bound:
        worker.close(cancel=True)
        raise DaemonError(f"cannot listen on {args.listen} (is the port taken?)")
    server.start()
    service.address = f"{host}:{bound}"
    if args.data_port >= 0:  # the bulk channel for large tensors, beside gRPC
        from .data_channel import DataServer

        def session_of(sid: str):
            with service.lock:
                return service.sessions.get(sid)

        try:
            ds = DataServer(host, args.data_port, token, sessions=session_of,
                            alloc=lambda n: worker.alloc(n, np.uint8), arena_bytes=worker._arena_bytes,
                            max_connections=2 * args.max_sessions, tls=(args.tls_cert, args.tls_key) if mode == "tls"
                            else None)
        except OSError as e:
            server.stop(0)
            worker.close(cancel=True)
            raise DaemonError(f"cannot listen on {host}:{args.data_port} for the bulk channel: {e} (pick another "
                              f"--data-port)") from None
        ds.start()
        service.data_server, service.data_port = ds, ds.port

    # 4. serving
    service.state = "serving"
    for name in ("", wire.SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if args.ready_file:
        write_atomically(args.ready_file, json.dumps(service.readiness(), indent=1))
    log.info("serving %d chip(s) and %d sub-worker(s) on %s (%s transport, token from %s)", worker._chips,
             worker._subs, service.address, mode, token_path)

    # 5. until SIGTERM
    degraded_since = None
    while not stop.wait(1.0):
        service.sweep()
        r = service.readiness()
        whole = r["chips"]["alive"] == r["chips"]["configured"] and \
            r["sub_workers"]["alive"] == r["sub_workers"]["configured"]
        if whole:
            degraded_since = None
            status = health_pb2.HealthCheckResponse.SERVING
        else:
            degraded_since = degraded_since or time.monotonic()
            status = health_pb2.HealthCheckResponse.SERVING if time.monotonic() - degraded_since < 10 \
                else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", wire.SERVICE):
            health_servicer.set(name, status)
    log.info("stopping: no new calls; running tasks get %.0f s to finish", args.grace)
    service.state = "draining"
    health_servicer.enter_graceful_shutdown()
    # Running tasks get the grace; streams that only watch (Attach, health
    # Watch) would hold server.stop(grace) for all of it, so wait for the
    # tasks here and then stop at once.
    deadline = time.monotonic() + args.grace
    while time.monotonic() < deadline:
        with service.lock:
            busy = any(cs.run_lock.locked() for cs in service.sessions.values())
        if not busy:
            break
        time.sleep(0.05)
    server.stop(0.5).wait()
    if service.data_server is not None:
        service.data_server.stop()
    with service.lock:
        left = list(service.sessions.values())
    for cs in left:
        service._close_session(cs, "the daemon stopped")
    worker.close(cancel=True)
    if args.ready_file:
        try:
            os.unlink(args.ready_file)
        except OSError:
            pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
