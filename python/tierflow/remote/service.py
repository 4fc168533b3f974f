"""The daemon's gRPC service: one session of its level-3 Worker per client.

Every call but the health service presents the daemon's token (checked by
TokenCheck in constant time before the request is read). A client opens a
session (OpenSession), keeps it by an Attach call that beats until the
client goes away (then its unfinished work is cancelled and its memory
freed), ships callables by content (Has, Push: catalog.py), and runs orch
functions (Run) on tensors given by value: inline, or staged with Upload /
the bulk channel before and Download after. Each handler validates what it
reads and answers a bad message with a status that names the problem; the
Worker and the other sessions are not disturbed (tests/ut/py/grpc_fuzz.py).
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import pickle
import secrets
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import wire
from .catalog import Catalog

log = logging.getLogger("tierflow.daemon")

MAX_SESSIONS = 64
MAX_STAGED = 4096          # staged tensors per session at most
ATTACH_DEADLINE_S = 30.0   # a session nobody attaches to within this is closed


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
        problem = None
        try:
            got = wire.into(buf, (wire.chunk_data(m) for m in request_iterator))
            if got != nbytes:
                problem = f"Upload: the stream ended after {got:,} of {nbytes:,} bytes"
        except wire.WireError as e:
            problem = f"Upload: {e}"
        if problem is not None:
            # Abort with no reference left to the buffer — neither this frame's
            # nor a chained exception's: gRPC may keep the abort exception in
            # a cycle, and the arena block would wait for the collector.
            del buf
            self._abort(context, "INVALID_ARGUMENT", problem)
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
            problem = None
            try:
                args, arrays = self._args(cs, request, context)
            except wire.WireError as e:
                problem = f"Run: {e}"  # aborted below, outside this block: see Upload
            except MemoryError as e:
                return self._failure("exception", f"MemoryError: {e}", e)
            if problem is not None:
                self._abort(context, "INVALID_ARGUMENT", problem)
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
        from .._level import inner_report
        kind, message, tb, types, pickled = inner_report(err)  # the client adds its own name in front
        return self.pb.RunReply(ok=False, failure=self.pb.Failure(kind=kind, message=message, traceback=tb,
                                                                  types=types, exception=pickled))

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
