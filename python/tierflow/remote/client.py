"""The client side of a remote level 3: the next-level child of a level-4
Worker that stands for one `tierflow daemon`.

w4.add_remote(address, l3, token=...) adds a next-level worker like
add_worker does; at w4.init() the level-4 fork server forks this child with
the others, before any engine thread. This process — and only this one —
then imports gRPC (nothing that holds gRPC state ever forks) and:
  1. connects, exchanges versions (a mismatch is refused with a table of
     both sides), checks that the daemon has the chips and sub-workers the
     template needs, pushes by content every callable the daemon lacks, opens
     its session and attaches to it; the outcome is what w4.init() reports;
  2. serves its mailbox like a chip: each request names an orch function and
     TaskArgs whose tensors live in the level-4 arena. Input and inout bytes
     go out (inside Run up to 1 MiB, larger ones streamed by Upload), the
     daemon runs the function on this client's session, and output and inout
     bytes come back into the same arrays (inside the reply, or streamed by
     Download) before the request is answered.

Liveness: gRPC keepalive pings, the session's Attach stream beating every
second, and a health Watch. When the daemon dies or stops answering for
`heartbeat_timeout` seconds, the request in flight is answered as *lost*:
the level-4 task fails as worker_died naming the address (retries apply),
this child stays, and the next request connects again — a daemon restarted
by its supervisor serves new work without restarting the level-4 Worker.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from .._level import _SEP, LocalSpec
from . import wire
from .catalog import forget_payloads, payload_of


class RemoteSpec(LocalSpec):
    """What add_remote() records: where the daemon is, how to reach it, and
    the level-3 template whose callables it needs (its stats address and
    trace part as for a local child)."""

    def __init__(self, address: str, template: Any, token: Optional[str], tls: Optional[str],
                 heartbeat_timeout: float, connect_timeout: float):
        super().__init__(template)
        self.address = address
        self.token = token
        self.tls = tls
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"<remote level-3 {self.address} from template {self.template.name}>"


class Lost(Exception):
    """The daemon is gone or does not answer (the task fails as worker_died)."""


class Connection:
    """One client of one daemon, in the proxy child."""

    def __init__(self, spec: RemoteSpec, name: str, orch_fns: List[Callable]):
        self.spec = spec
        self.name = name
        self.orch_fns = orch_fns
        self.md = wire.auth_metadata(spec.token) if spec.token else ()
        self.channel = None
        self.session = ""
        self.orch_keys: List[bytes] = []
        self.lost_reason: Optional[str] = None
        self.last_beat = 0.0
        self.draining = False
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.generation = 0
        import grpc
        from . import tierflow_remote_pb2 as pb
        self.grpc = grpc
        self.pb = pb

    # -- connecting
    def _options(self):
        t_ms = int(self.spec.heartbeat_timeout * 1000)
        return [("grpc.max_receive_message_length", wire.MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", max(500, t_ms // 4)),
                ("grpc.keepalive_timeout_ms", max(500, t_ms // 2)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.enable_retries", 0),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000)]

    def _call(self, method: str, req, rep, timeout: Optional[float] = None):
        fn = self.channel.unary_unary(f"/{wire.SERVICE}/{method}", request_serializer=req.SerializeToString,
                                      response_deserializer=rep.FromString)
        return fn(req, metadata=self.md, timeout=timeout)

    def connect(self, patient: bool = False) -> None:
        """Handshake, catalog, session; raises RuntimeError with the reason.
        `patient` (at init()): a daemon that does not answer yet is asked
        again until connect_timeout; otherwise one attempt (a refused
        connection fails at once)."""
        grpc, pb = self.grpc, self.pb
        self.close()
        forget_payloads()  # pickle afresh: globals the functions capture may have changed
        address = self.spec.address
        if self.spec.tls:
            with open(self.spec.tls, "rb") as f:
                ca = f.read()
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca),
                                          options=self._options())
        else:
            channel = grpc.insecure_channel(address, options=self._options())
        self.channel = channel
        timeout = self.spec.connect_timeout
        deadline = time.monotonic() + timeout
        hello_req = pb.HelloRequest(client=pb.Versions(**wire.versions()))
        while True:
            try:
                hello = self._call("Hello", hello_req, pb.HelloReply, max(0.1, deadline - time.monotonic()))
                break
            except grpc.RpcError as e:
                code = e.code() if hasattr(e, "code") else None
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise RuntimeError(self._refusal("Hello", e)) from None
                if not patient or time.monotonic() >= deadline:
                    raise RuntimeError(f"cannot reach a tierflow daemon at {address} within {timeout:g} s "
                                       f"({_status(e)}); is it running, and listening there"
                                       f"{' with TLS' if self.spec.tls else ' without TLS'}?") from None
                time.sleep(0.1)
        daemon_v = {f: getattr(hello.daemon, f) for f in wire.versions()}
        bad = wire.version_mismatch(wire.versions(), daemon_v)
        if bad:
            raise RuntimeError(f"the daemon at {address} cannot run this client's functions: {bad}")
        t = self.spec.template
        if t._chips > hello.chips or t._subs > hello.sub_workers:
            raise RuntimeError(f"the daemon at {address} has {hello.chips} chip(s) and {hello.sub_workers} "
                               f"sub-worker(s); template {t.name} needs {t._chips} and {t._subs}")
        # The catalog: everything the orch functions may use, by content.
        items = [(payload_of(fn, "sub"), getattr(fn, "__qualname__", "sub")) for fn in t._sub_fns]
        items += [(payload_of(fn, "kernel"), _name(fn)) for fn in t._kernel_fns]
        orch = [(payload_of(fn, "orch"), _name(fn)) for fn in self.orch_fns]
        items += orch
        self.orch_keys = [p[2] for p, _ in orch]
        kinds = {"sub": 1, "kernel": 2, "native": 3, "orch": 4}
        try:
            missing = set(self._call("Has", pb.HasRequest(keys=[p[2] for p, _ in items]), pb.HasReply,
                                     timeout).missing)
            for (kind, payload, key), fname in items:
                if key in missing:
                    missing.discard(key)
                    rep = self._call("Push", pb.PushRequest(kind=kinds[kind], key=key, payload=payload, name=fname),
                                     pb.PushReply, timeout)
                    if rep.key != key:
                        raise RuntimeError(f"the daemon at {address} stored {fname} under another key")
            opened = self._call("OpenSession", pb.OpenRequest(name=f"{socket.gethostname()}:{os.getpid()} "
                                                              f"{self.name}", weight=1, chips=t._chips,
                                                              sub_workers=t._subs), pb.OpenReply, timeout)
        except grpc.RpcError as e:
            raise RuntimeError(self._refusal("the handshake", e)) from None
        self.session = opened.session
        self.data = None
        if hello.data_port:  # large tensors go straight between the arenas (data_channel.py)
            from .data_channel import DataClient
            host, _port = wire.split_address(address)
            self.data = DataClient(host, hello.data_port, self.spec.token, self.session, ca_file=self.spec.tls,
                                   timeout=self.spec.heartbeat_timeout)
        self._run_call = channel.unary_unary(f"/{wire.SERVICE}/Run", request_serializer=pb.RunRequest.SerializeToString,
                                             response_deserializer=pb.RunReply.FromString)
        self.lost_reason = None
        self.draining = False
        self.last_beat = time.monotonic()
        self.generation += 1
        gen = self.generation
        threading.Thread(target=self._attach, args=(gen,), name="tierflow-attach", daemon=True).start()
        threading.Thread(target=self._watch_health, args=(gen,), name="tierflow-health", daemon=True).start()
        threading.Thread(target=self._watchdog, args=(gen,), name="tierflow-watchdog", daemon=True).start()

    def _refusal(self, what: str, e) -> str:
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        if code == self.grpc.StatusCode.UNAUTHENTICATED:
            return (f"the daemon at {self.spec.address} refused the token ({details}); pass its token file's "
                    f"contents as add_remote(..., token=)")
        return f"the daemon at {self.spec.address} failed {what}: {code.name if code else '?'}: {details}"

    def close(self) -> None:
        self.generation += 1
        data, self.data = getattr(self, "data", None), None
        if data is not None:
            data.close()
        ch, self.channel = self.channel, None
        if ch is not None:
            try:
                ch.close()
            except Exception:
                pass

    def _lose(self, gen: int, reason: str) -> None:
        with self.lock:
            if gen == self.generation and self.lost_reason is None:
                self.lost_reason = reason
        self.wake.set()

    def _attach(self, gen: int) -> None:
        pb = self.pb
        fn = self.channel.unary_stream(f"/{wire.SERVICE}/Attach", request_serializer=pb.AttachRequest.SerializeToString,
                                       response_deserializer=pb.Beat.FromString)
        try:
            for beat in fn(pb.AttachRequest(session=self.session, interval_s=min(1.0, self.spec.heartbeat_timeout / 4)),
                           metadata=self.md):
                if gen != self.generation:
                    return
                self.last_beat = time.monotonic()
                self.draining = beat.state == "draining"
            self._lose(gen, "ended the session")
        except self.grpc.RpcError as e:
            self._lose(gen, f"dropped the connection ({_status(e)})")
        except Exception as e:  # the channel was closed under us
            self._lose(gen, f"dropped the connection ({type(e).__name__})")

    def _watch_health(self, gen: int) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        try:
            stub = health_pb2_grpc.HealthStub(self.channel)
            for r in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                if gen != self.generation:
                    return
                self.draining = r.status != health_pb2.HealthCheckResponse.SERVING
        except Exception:
            pass  # the Attach stream and keepalive decide; a closed channel ends this too

    def _watchdog(self, gen: int) -> None:
        limit = self.spec.heartbeat_timeout
        while gen == self.generation and self.lost_reason is None:
            time.sleep(min(0.25, limit / 8))
            if time.monotonic() - self.last_beat > limit:
                self._lose(gen, f"stopped answering (no heartbeat for {limit:g} s)")

    # -- serving one request
    def run(self, port: Any, callable_id: int, args: Any) -> None:
        address = self.spec.address
        if self.channel is None or self.lost_reason is not None:
            try:
                self.connect()
            except Exception as e:
                self.close()
                port.lost(_b(f"{self.name}: the daemon at {address} is unreachable: {e}"), b"")
                return
        try:
            reply, tensors = self._run(callable_id, args)
        except Lost as e:
            reason = str(e)
            self.close()
            port.lost(_b(f"{self.name}: the daemon at {address} {reason}"), b"")
            return
        except _Refused as e:
            port.fail(_b(f"{self.name}: the daemon at {address} refused the task: {e}"), b"",
                      b"tierflow.RemoteError|builtins.RuntimeError|builtins.Exception|builtins.BaseException", b"")
            return
        if not reply.ok:
            f = reply.failure
            message = f"{self.name}{_SEP}{f.message}"
            port.fail(_b(message), _b(f.traceback), _b(f.types), bytes(f.exception))
            return
        try:
            for out in reply.outputs:
                if out.index >= len(tensors):
                    raise wire.WireError(f"output {out.index} names no tensor")
                dest = tensors[out.index][1]
                if out.WhichOneof("source") == "data":
                    n = wire.into(dest, [out.data])
                else:
                    n = self._download(out.staged, dest)
                if n != dest.nbytes:
                    raise wire.WireError(f"output {out.index} came back with {n} of {dest.nbytes} bytes")
        except Lost as e:
            self.close()
            port.lost(_b(f"{self.name}: the daemon at {address} {e}"), b"")
            return
        except wire.WireError as e:
            port.fail(_b(f"{self.name}: the daemon at {address} sent back a bad output: {e}"), b"", b"", b"")
            return
        port.complete(bytes(reply.value))

    def _run(self, callable_id: int, args: Any):
        pb = self.pb
        if callable_id >= len(self.orch_keys):
            raise _Refused(f"orch function #{callable_id} is not in this client's catalog")
        tensors = wire.tensor_list(args)
        msg = pb.RunRequest(session=self.session, orch=self.orch_keys[callable_id])
        inline = 0
        for tag, arr in tensors:
            t = msg.tensors.add(tag=tag, dtype=arr.dtype.str, shape=arr.shape, nbytes=arr.nbytes)
            if tag == 2:  # an output's old bytes never travel
                continue
            if arr.nbytes <= wire.MAX_INLINE_BYTES and inline + arr.nbytes <= wire.MAX_INLINE_TOTAL:
                t.data = bytes(wire.contiguous_bytes(arr))
                inline += arr.nbytes
            else:
                t.staged = self._upload(arr)
        for v in wire.scalar_list(args):
            if isinstance(v, float):
                msg.scalars.add(f=v)
            else:
                msg.scalars.add(i=v)
        return self._wait(self._run_call.future(msg, metadata=self.md)), tensors

    def _wait(self, fut):
        """The reply of a call in flight, or Lost once the daemon is."""
        self.wake.clear()
        fut.add_done_callback(lambda _f: self.wake.set())
        while not fut.done():
            if self.lost_reason is not None:
                fut.cancel()
                raise Lost(self.lost_reason)
            self.wake.wait(0.5)
        try:
            return fut.result()
        except self.grpc.RpcError as e:
            raise self._classify(e) from None
        except self.grpc.FutureCancelledError:
            raise Lost(self.lost_reason or "cancelled the call") from None

    def _classify(self, e) -> Exception:
        code = e.code() if hasattr(e, "code") else None
        S = self.grpc.StatusCode
        if self.lost_reason is not None:
            return Lost(self.lost_reason)
        if code in (S.UNAVAILABLE, S.CANCELLED, S.DEADLINE_EXCEEDED, S.UNKNOWN, S.INTERNAL, S.ABORTED):
            return Lost(f"dropped the call ({_status(e)})")
        return _Refused(_status(e))

    def _bulk(self, what: str, fn, *args):
        from .data_channel import ChannelError
        try:
            return fn(*args)
        except ChannelError as e:
            if self.lost_reason is not None:
                raise Lost(self.lost_reason) from None
            if "refused" in str(e):
                raise _Refused(f"{what}: {e}") from None
            raise Lost(f"dropped the bulk connection during {what} ({e})") from None
        except OSError as e:
            raise Lost(self.lost_reason or f"dropped the bulk connection during {what} "
                                           f"({type(e).__name__}: {e})") from None

    def _upload(self, arr) -> str:
        if self.data is not None:
            return self._bulk("an upload", self.data.upload, arr)
        pb = self.pb
        call = self.channel.stream_unary(f"/{wire.SERVICE}/Upload", request_serializer=None,
                                         response_deserializer=pb.UploadReply.FromString)
        md = self.md + (("tierflow-session", self.session), ("tierflow-nbytes", str(arr.nbytes)))
        return self._wait(call.future(wire.chunks_of(arr), metadata=md)).staged

    def _download(self, staged: str, dest) -> int:
        if self.data is not None:
            return self._bulk("a download", self.data.download, staged, dest)
        pb = self.pb
        call = self.channel.unary_stream(f"/{wire.SERVICE}/Download",
                                         request_serializer=pb.DownloadRequest.SerializeToString,
                                         response_deserializer=None)
        stream = call(pb.DownloadRequest(session=self.session, staged=staged), metadata=self.md)
        try:
            return wire.into(dest, (wire.chunk_data(m) for m in stream))
        except self.grpc.RpcError as e:
            raise self._classify(e) from None

    def write_trace_part(self, prefix: str) -> None:
        """This client's tasks as the daemon ran them, onto this host's clock
        (the offset measured around the call), for the level-4 trace."""
        import json
        from .. import _tracefile
        if self.channel is None or self.lost_reason is not None:
            return
        pb = self.pb
        t0 = time.monotonic_ns()
        rep = self._call("Trace", pb.TraceRequest(session=self.session), pb.TraceReply, 30.0)
        t1 = time.monotonic_ns()
        proc = json.loads(rep.json)
        proc["label"] = f"{self.name}: {proc['label']}"
        delta = (t0 + t1) // 2 - rep.daemon_now_ns  # daemon clock -> ours, to within half the round trip
        _tracefile.write_part(f"{prefix}{os.getpid()}.json", [_tracefile.shifted(proc, delta)])

    def stats(self) -> Dict[str, Any]:
        """The daemon's view of this client: its session and its Worker."""
        import json
        pb = self.pb
        base = {"address": self.spec.address, "connected": self.channel is not None and self.lost_reason is None}
        if not base["connected"]:
            return {**base, "lost": self.lost_reason}
        try:
            rep = self._call("Stats", pb.StatsRequest(session=self.session), pb.StatsReply, 5.0)
            return {**base, **json.loads(rep.json)}
        except Exception as e:
            return {**base, "error": str(e)}


class _Refused(Exception):
    """The daemon answered but would not run the task (a bad message)."""


def _status(e) -> str:
    try:
        return f"{e.code().name}: {e.details()}"
    except Exception:
        return str(e)


def _name(fn) -> str:
    from ..native import NativeKernel
    if isinstance(fn, NativeKernel):
        return fn.symbol
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _b(s: str) -> bytes:
    return s.encode("utf-8", "backslashreplace")


class _Hello:
    def __init__(self, error: Optional[str]):
        self.error = error

    def stats(self) -> Dict[str, Any]:
        return {"error": self.error}


def serve_remote(port: Any, spec: RemoteSpec, orch_fns: List[Callable], *, name: str) -> None:
    """The body of the proxy child (see the module docstring)."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"  # this process never forks
    from .._level import _answer_stats
    conn = Connection(spec, name, orch_fns)
    error = None
    try:
        conn.connect(patient=True)
    except Exception as e:
        error = str(e)
        conn.close()
    _answer_stats(_Hello(error), spec._stats_address + " hello")
    _answer_stats(conn, spec._stats_address)
    try:
        while True:
            req = port.wait()
            if req is None:
                break
            callable_id, _rank, _size, _barrier, args = req
            try:
                conn.run(port, callable_id, args)
            except BaseException as exc:  # never leave a request unanswered
                from .._child import failure_report
                port.fail(*failure_report(exc))
            del args
        if spec._trace_part:  # the level-4 Worker traces: its part of the file
            try:
                conn.write_trace_part(spec._trace_part)
            except Exception as e:
                print(f"tierflow: {name} could not fetch its trace from {spec.address}: {e}", file=sys.stderr)
    finally:
        conn.close()
