"""Remote level 3 (see benchmarks/WORKLOADS.md, R1-R3): a level-4 Worker
whose next level is `tierflow daemon` processes on loopback, reached over
gRPC (`add_remote`), each measured against a peer in the same run.

R1, bytes: one task with one 64 MiB inout tensor, and one task with 64
inout tensors of 8 MiB (W3's shapes), round trip through a daemon whose
orch function only touches one byte per 4 KiB page of each tensor — in GB/s
(10^9 bytes per second, counting the bytes both ways) — against a raw TCP
socket on loopback moving the same bytes the same way: the driver sends
every buffer (`sendall`), an echo server in its own process receives all
of them into preallocated buffers (`recv_into`), touches the same bytes and
sends them back, the driver receives them into its preallocated buffers.

R2, latency: a chain of 2,000 orch tasks on one int64[8] (inout), each
submitting one chip task (the native add-one kernel) on the daemon — in
microseconds per link — against a plain gRPC unary round trip of a small
message (an echo service: server and client each in a process of their
own, 2,000 sequential calls).

R3, fan-out: 2,000 independent orch tasks over two daemons, task i on
element i of one int64[2000], each running one chip task on it — in tasks/s
— against ProcessPoolExecutor(2) running the same work (bench_levels' L2
peer). No target: a proxy serves one request at a time, so this is bound by
R2's hop.

The driver process never imports grpc (a process with gRPC threads must not
fork, and the driver forks Workers): the daemons and both gRPC echo
processes are subprocesses, and the level-4 Worker's remote proxies import
gRPC only in their own children. Run alone:

    python benchmarks/bench_remote.py [--reps 5] [--quick]
"""
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MiB = 1 << 20
DAEMON_ARENA = 3 << 30   # R1 stages 512 MiB in the daemon's arena (inputs, then outputs in place)
L4_ARENA = 3 << 29       # 576 MiB of R1 tensors plus the small ones
TOKEN = "bench-remote-token"
HEADER = struct.Struct("<QQ")  # tensors, bytes each
ECHO_METHOD = "/bench.Echo/Echo"
PAGE = 4096


# -- peers: the processes this file runs as (never imported by the driver) --

def tcp_echo_server(ready_file: str, max_bytes: int) -> None:
    """Accepts one connection; for each request (count, size) receives all
    `count` buffers into preallocated memory, adds one to every 4096th byte,
    then sends them all back."""
    buf = np.zeros(max_bytes, np.uint8)  # touched: no page faults in the timed part
    mv = memoryview(buf)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    _write_ready(ready_file, {"address": "127.0.0.1:%d" % ls.getsockname()[1]})
    conn, _ = ls.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = bytearray(HEADER.size)
    while _recv_exact(conn, memoryview(head)):
        count, size = HEADER.unpack(head)
        total = count * size
        _recv_exact(conn, mv[:total])
        buf[:total:PAGE] += 1
        for i in range(count):
            conn.sendall(mv[i * size:(i + 1) * size])
    conn.close()


def _recv_exact(conn, view) -> bool:
    pos, n = 0, len(view)
    while pos < n:
        got = conn.recv_into(view[pos:], n - pos)
        if got == 0:
            if pos == 0:
                return False
            raise ConnectionError("the peer closed mid-message")
        pos += got
    return True


def grpc_echo_server(ready_file: str) -> None:
    """A unary echo service on loopback, with the transport the daemon uses
    on loopback (local credentials: plaintext TCP)."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    from concurrent.futures import ThreadPoolExecutor
    import grpc
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: req, request_deserializer=None,
                                                  response_serializer=None)
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler}),))
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP))
    server.start()
    _write_ready(ready_file, {"address": "127.0.0.1:%d" % port})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


def grpc_echo_client(address: str, nbytes: int) -> None:
    """Reads a count per line from stdin; answers each with the microseconds
    per call of that many sequential blocking unary calls (a JSON line)."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    import grpc
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    call = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
    msg = bytes(range(256)) * (nbytes // 256) + bytes(nbytes % 256)
    for _ in range(200):
        call(msg)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            rep = call(msg)
        dt = time.perf_counter() - t0
        assert rep == msg
        print(json.dumps({"us_per_call": dt / n * 1e6}), flush=True)


def _write_ready(path: str, info: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


# -- the driver's side --------------------------------------------------------

def _wait_ready(proc, path: str, what: str, log: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} was not ready within {timeout:g} s:\n{_tail(log)}")
        time.sleep(0.02)
    with open(path) as f:
        return json.load(f)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""


def _stop(proc, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Processes:
    """The subprocesses of one run: daemons, echo servers, the gRPC client."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tierflow-bench-remote-")
        self.procs = []
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(self.token_file, 0o600)

    def _spawn(self, name, argv):
        log = os.path.join(self.dir, f"{name}.log")
        ready = os.path.join(self.dir, f"{name}.ready.json")
        with open(log, "ab") as out:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p, ready, log

    def daemon(self, name: str, chips: int = 1, arena_bytes: int = DAEMON_ARENA) -> str:
        ready = os.path.join(self.dir, f"{name}.ready.json")
        argv = [sys.executable, "-m", "tierflow", "daemon", "--listen", "127.0.0.1:0", "--chips", str(chips),
                "--sub-workers", "0", "--arena-bytes", str(arena_bytes), "--token-file", self.token_file,
                "--ready-file", ready, "--grace", "5", "--log-level", "WARNING"]
        p, ready, log = self._spawn(name, argv)
        return _wait_ready(p, ready, f"the daemon {name}", log)["address"]

    def peer(self, name: str, *args: str):
        p, ready, log = self._spawn(name, [sys.executable, os.path.abspath(__file__), name, os.path.join(
            self.dir, f"{name}.ready.json"), *args])
        return p, _wait_ready(p, ready, name, log)["address"]

    def close(self) -> None:
        for p in reversed(self.procs):
            _stop(p)
        for f in os.listdir(self.dir):
            try:
                os.unlink(os.path.join(self.dir, f))
            except OSError:
                pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass


class RemoteBench:
    """A level-4 Worker over `daemons` (addresses), one add_remote each, with
    R1's orch function and the one-chip-task orch function of R2 and R3."""

    def __init__(self, addresses, arena_bytes=L4_ARENA):
        import tierflow as tf
        from tierflow.native import demo_kernels_path
        self.tf = tf
        self.w4 = tf.Worker(level=4, window=4096, arena_bytes=arena_bytes, name="bench-l4")
        self.k = None
        for address in addresses:
            l3 = tf.Worker(level=3, chips=1)
            k = l3.register_kernel(tf.NativeKernel(demo_kernels_path(), "tf_add_one_i64"))
            self.k = self.k or k
            self.w4.add_remote(address, l3, token=TOKEN)
        k = self.k

        # Nested, so that cloudpickle ships them by value (this module is
        # not importable in the daemon when run.py imports it).
        def touch_pages(orch, args):
            """R1: adds one to every 4096th byte of every tensor (so every
            page must come back); submits nothing."""
            for i in range(args.num_tensors):
                args.tensor(i).reshape(-1).view(np.uint8)[::4096] += 1

        def one_chip_task(orch, args):
            orch.submit_next_level(k, args)

        self.o_touch = self.w4.register_orch(touch_pages)
        self.o_one = self.w4.register_orch(one_chip_task)
        self.w4.init()
        self.n_remotes = len(addresses)
        self.big = {}

    def close(self):
        self.w4.close()

    def _tensors(self, count, size):
        key = (count, size)
        if key not in self.big:
            self.big.clear()
            ts = [self.w4.alloc(size, np.uint8) for _ in range(count)]
            for t in ts:
                t[:] = 0  # page the arena in before any timing
            self.big[key] = [ts, 0]
        return self.big[key]

    def r1_gb_per_s(self, count, size):
        entry = self._tensors(count, size)
        ts = entry[0]
        args = self.tf.TaskArgs()
        for t in ts:
            args.inout(t)
        t0 = time.perf_counter()
        self.w4.submit_next_level(self.o_touch, args)
        self.w4.drain()
        dt = time.perf_counter() - t0
        entry[1] += 1
        _check_touched(ts, entry[1])
        return 2 * count * size / dt / 1e9

    def r2_hop_us(self, n=2000):
        x = self.w4.zeros(8, np.int64)
        args = self.tf.TaskArgs().inout(x)
        t0 = time.perf_counter()
        for _ in range(n):
            self.w4.submit_next_level(self.o_one, args)
        self.w4.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == n), x
        return dt / n * 1e6

    def r3_fanout_tasks_per_s(self, n=2000):
        tf = self.tf
        x = self.w4.zeros(n, np.int64)
        before = dict(self.w4.stats()["tasks_per_worker"])
        t0 = time.perf_counter()
        for i in range(n):
            self.w4.submit_next_level(self.o_one, tf.TaskArgs().inout(x[i:i + 1]))
        self.w4.drain()
        dt = time.perf_counter() - t0
        assert np.all(x == 1)
        per = self.w4.stats()["tasks_per_worker"]
        ran = {k: per[k] - before.get(k, 0) for k in per}
        assert sum(1 for v in ran.values() if v > 0) == self.n_remotes, ran
        return n / dt


def _check_touched(ts, times):
    want = np.uint8(times % 256)
    for t in ts:
        if not (np.all(t[::PAGE] == want) and np.count_nonzero(t) == len(t[::PAGE]) * (want != 0)):
            raise AssertionError(f"a round-tripped tensor came back wrong (expected {times} on every 4096th byte)")


class TcpPeer:
    """The driver's end of R1's raw TCP peer."""

    def __init__(self, procs: Processes, max_bytes: int):
        _, address = procs.peer("tcp-echo-server", str(max_bytes))
        host, _, port = address.rpartition(":")
        self.s = socket.create_connection((host, int(port)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.bufs = {}

    def close(self):
        self.s.close()

    def gb_per_s(self, count, size):
        key = (count, size)
        if key not in self.bufs:
            self.bufs.clear()
            self.bufs[key] = [[np.zeros(size, np.uint8) for _ in range(count)], 0]
        bufs, _ = entry = self.bufs[key]
        views = [memoryview(b) for b in bufs]
        t0 = time.perf_counter()
        self.s.sendall(HEADER.pack(count, size))
        for v in views:
            self.s.sendall(v)
        for v in views:
            _recv_exact(self.s, v)
        dt = time.perf_counter() - t0
        entry[1] += 1
        _check_touched(bufs, entry[1])
        return 2 * count * size / dt / 1e9


class GrpcPeer:
    """R2's plain gRPC peer: an echo server process and a client process."""

    def __init__(self, procs: Processes, nbytes: int = 128):
        _, address = procs.peer("grpc-echo-server")
        log = open(os.path.join(procs.dir, "grpc-echo-client.log"), "ab")
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "grpc-echo-client", address,
                                   str(nbytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        procs.procs.append(self.p)
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the gRPC echo client did not start:\n" + _tail(os.path.join(procs.dir,
                                                                                             "grpc-echo-client.log")))

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(30)

    def rt_us(self, n=2000):
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())["us_per_call"]


def run(measure, reps, quick):
    """R1-R3 with `measure(fn, reps)` (run.py's: a warm-up, then the
    median, min and max of `reps` calls). A quick run keeps the names with
    smaller sizes: 8 MiB and 8 x 8 MiB, 200 tasks."""
    from bench_levels import PeerFanout
    out = {}
    one = (8 * MiB) if quick else (64 * MiB)
    many, many_size = (8, 8 * MiB) if quick else (64, 8 * MiB)
    n_hop, n_fan = (200, 200) if quick else (2000, 2000)
    procs = Processes()
    try:
        a = procs.daemon("daemon-a")
        b = procs.daemon("daemon-b")
        tcp = TcpPeer(procs, max(one, many * many_size))
        grpc_peer = GrpcPeer(procs)
        try:
            rb = RemoteBench([a])
            try:
                out["r1_remote_64mib_gb_per_s"] = measure(lambda: rb.r1_gb_per_s(1, one), reps)
                out["r1_tcp_64mib_gb_per_s"] = measure(lambda: tcp.gb_per_s(1, one), reps)
                out["r1_remote_64x8mib_gb_per_s"] = measure(lambda: rb.r1_gb_per_s(many, many_size), reps)
                out["r1_tcp_64x8mib_gb_per_s"] = measure(lambda: tcp.gb_per_s(many, many_size), reps)
                rb.big.clear()
                out["r2_remote_hop_us"] = measure(lambda: rb.r2_hop_us(n_hop), reps)
                out["r2_grpc_unary_rt_us"] = measure(lambda: grpc_peer.rt_us(n_hop), reps)
            finally:
                rb.close()
            rb = RemoteBench([a, b])
            try:
                out["r3_remote_fanout_tasks_per_s"] = measure(lambda: rb.r3_fanout_tasks_per_s(n_fan), reps)
            finally:
                rb.close()
        finally:
            tcp.close()
            grpc_peer.close()
    finally:
        procs.close()
    p = PeerFanout()
    try:
        out["r3_processpool_tasks_per_s"] = measure(lambda: p.l2_fanout_tasks_per_s(n_fan), reps)
    finally:
        p.close()
    return out


def ratios(rm):
    """The remote ratios (run.py folds them into its table)."""
    m = lambda d: d["median"]  # noqa: E731
    return {
        "r1 remote / raw TCP round trip, one 64 MiB inout tensor (throughput)":
            m(rm["r1_remote_64mib_gb_per_s"]) / m(rm["r1_tcp_64mib_gb_per_s"]),
        "r1 remote / raw TCP round trip, 64 x 8 MiB inout tensors in one task (throughput)":
            m(rm["r1_remote_64x8mib_gb_per_s"]) / m(rm["r1_tcp_64x8mib_gb_per_s"]),
        "r2 remote hop / gRPC unary round trip (x slower)": m(rm["r2_remote_hop_us"]) / m(rm["r2_grpc_unary_rt_us"]),
        "r3 remote fan-out / processpool (x faster)":
            m(rm["r3_remote_fanout_tasks_per_s"]) / m(rm["r3_processpool_tasks_per_s"]),
    }


TARGETS = {
    "r1 remote / raw TCP round trip, one 64 MiB inout tensor (throughput)": (">=", 0.5),
    "r1 remote / raw TCP round trip, 64 x 8 MiB inout tensors in one task (throughput)": (">=", 0.5),
    "r2 remote hop / gRPC unary round trip (x slower)": ("<=", 3),
}


def _measure(fn, reps):
    fn()  # untimed warm-up
    xs = [fn() for _ in range(reps)]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "reps": xs}


def main(argv):
    if argv and argv[0] == "tcp-echo-server":
        return tcp_echo_server(argv[1], int(argv[2]))
    if argv and argv[0] == "grpc-echo-server":
        return grpc_echo_server(argv[1])
    if argv and argv[0] == "grpc-echo-client":
        return grpc_echo_client(argv[1], int(argv[2]))
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures and ratios to this file")
    opts = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    rm = run(_measure, opts.reps, opts.quick)
    rat = ratios(rm)
    for k, d in rm.items():
        print(f"{k:34s} {d['median']:10.4g}  ({d['min']:.4g}-{d['max']:.4g})")
    for k, v in rat.items():
        op, t = TARGETS.get(k, ("", None))
        met = "" if t is None else ("yes" if (v >= t if op == ">=" else v <= t) else "NO")
        print(f"{k:80s} {v:8.3g}  {op} {t if t is not None else ''} {met}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"remote": rm, "ratios": rat}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
