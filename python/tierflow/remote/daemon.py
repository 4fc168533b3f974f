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
cancelled and its memory freed. The service itself: service.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from typing import List, Optional, Tuple

import numpy as np

from . import wire
from .catalog import Catalog, RuntimeCallables, SharedHeap, install
from .service import MAX_SESSIONS, Service, build_server

log = logging.getLogger("tierflow.daemon")

DEFAULT_LISTEN = "127.0.0.1:7070"
DEFAULT_TOKEN_FILE = os.path.join("~", ".tierflow", "daemon.token")


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
    from .._files import replacing
    with replacing(path, ".tierflow-ready-") as tmp, open(tmp, "w") as f:
        f.write(text)


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
