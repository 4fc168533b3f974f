"""Two hosts: a `tierflow daemon` in a network namespace of its own, reached
by the level-4 Worker in this process over a veth pair, at addresses that
exist only on the test's own veth (a random /30 in 10.213.0.0/16: the host
end in this namespace, the daemon's end in the new one).

Needs root and iproute2 (`ip netns`); the module is skipped otherwise. The
namespace and the veth are deleted at the end, also after a failure."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import cloudpickle
import numpy as np
import pytest

import tierflow as tf
from conftest import process_running, wait_until
from remote_rig import Daemon, probe

# The daemon cannot import this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

HEARTBEAT = 3.0


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


class Net:
    """A namespace `name` joined to this one by a veth pair: host_ip on
    this side, ns_ip (the daemon's) on the other."""

    def __init__(self):
        tag = os.urandom(3).hex()
        self.name = f"tfns-{tag}"
        self.host_if, self.peer_if = f"tfh-{tag}", f"tfp-{tag}"
        base = random.randrange(0, 1 << 14) * 4  # a /30 in 10.213.0.0/16
        self.host_ip = f"10.213.{base >> 8}.{(base & 255) + 1}"
        self.ns_ip = f"10.213.{base >> 8}.{(base & 255) + 2}"

    def create(self):
        r = _ip("netns", "add", self.name, check=False)
        if r.returncode != 0:
            pytest.skip(f"`ip netns add` failed: {r.stderr.strip()}")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        _ip("link", "set", self.peer_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.peer_if)
        _ip("-n", self.name, "link", "set", self.peer_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def pids(self):
        r = _ip("netns", "pids", self.name, check=False)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []

    def link(self, state):
        _ip("-n", self.name, "link", "set", self.peer_if, state)

    def delete(self):
        for pid in self.pids():  # only what this test started lives there
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.pids(), 10, 0.05)
        _ip("netns", "del", self.name, check=False)  # takes the veth pair with it
        _ip("link", "del", self.host_if, check=False)

    @property
    def exec(self):
        return ["ip", "netns", "exec", self.name]


@pytest.fixture(scope="module")
def net():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is missing")
    n = Net()
    try:
        n.create()
        yield n
    finally:
        n.delete()
    assert _ip("netns", "pids", n.name, check=False).returncode != 0, f"namespace {n.name} is still there"
    assert _ip("link", "show", n.host_if, check=False).returncode != 0, f"veth {n.host_if} is still there"


@pytest.fixture
def daemons(tmp_path, net):
    """daemons(**kw) -> a Daemon inside the namespace, listening on its
    address with --insecure; each is stopped (or found dead) at the end."""
    made = []

    def start(name="daemon", extra=(), **kw):
        d = Daemon(tmp_path, prefix=net.exec, listen=f"{net.ns_ip}:0", extra=["--insecure", *extra], name=name,
                   token=os.urandom(16).hex(), **kw)
        made.append(d)
        return d

    yield start
    for d in made:
        d.stop()
        d.assert_clean()


# -- the level-4 side's functions (shipped to the daemon by value) --------------

K = {}


def axpy(args, chip):
    """out = a * s + b; c += 1."""
    a, b, out, c = (args.tensor(i) for i in range(4))
    out[...] = a * args.scalar(0) + b
    c += 1


def nap(args, chip):
    time.sleep(args.scalar(0))


def orch_axpy(orch, args):
    """Returns the network namespace it ran in."""
    orch.submit_next_level(K["axpy"], args)
    orch.drain()
    return os.stat("/proc/self/ns/net").st_ino


def orch_nap(orch, args):
    orch.submit_next_level(K["nap"], args)


def _netns_of(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


def level4(make_worker, d):
    l3 = tf.Worker(level=3, chips=2, sub_workers=1)
    K["axpy"] = l3.register_kernel(axpy)
    K["nap"] = l3.register_kernel(nap)
    w4 = make_worker(level=4)
    w4.add_remote(d.address, l3, token=d.token, heartbeat_timeout=HEARTBEAT)
    h = {f.__name__: w4.register_orch(f) for f in (orch_axpy, orch_nap)}
    w4.init()
    return w4, h


# -- the tests ----------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_non_loopback_address_without_tls_or_insecure_is_refused(tmp_path, net):
    d = Daemon(tmp_path, prefix=net.exec, listen=f"{net.ns_ip}:0", start=False)
    r = subprocess.run(d.argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    text = r.stdout + r.stderr
    assert "TLS" in text and "--insecure" in text and net.ns_ip in text, text
    assert not os.path.exists(d.ready_file)


@pytest.mark.timeout(180)
def test_an_l4_runs_orch_tasks_on_a_daemon_in_another_namespace(make_worker, daemons, net):
    d = daemons()
    assert d.address.startswith(f"{net.ns_ip}:") and d.ready["auth"]["transport"] == "insecure"
    assert _netns_of(d.pid) != _netns_of(os.getpid())  # the daemon process itself (`ip netns exec` execs it)
    assert probe("health", d.address) == {"status": "SERVING"}  # over the veth, from this namespace
    w4, h = level4(make_worker, d)
    here = os.stat("/proc/self/ns/net").st_ino
    for n in (5, 200_000):  # inline, and (1.6 MB each) through Upload and Download
        a = w4.share(np.arange(n, dtype=np.float64))
        b = w4.full(n, 2.0, np.float64)
        out = w4.full(n, -1.0, np.float64)
        c = w4.share(np.arange(n, dtype=np.int64))
        t = w4.submit_next_level(h["orch_axpy"], tf.TaskArgs().input(a).input(b).output(out).inout(c).scalar(3.0))
        there = t.result(timeout=60)
        assert there != here, "the orch function ran in this process's network namespace"
        np.testing.assert_array_equal(out, np.arange(n) * 3.0 + 2.0)
        np.testing.assert_array_equal(c, np.arange(n) + 1)
        np.testing.assert_array_equal(a, np.arange(n))  # an input is not written back
    w4.drain(timeout=30)
    assert f"opened for ipv4:{net.host_ip}:" in d.log(), "the session did not come over the veth"
    w4.close()  # before the daemon stops: a connected client holds its stop for the whole --grace
    assert "grpc" not in sys.modules, "the pytest process imported grpc (it forks: gRPC does not survive that)"


def _fails_as_worker_died(w4, t, d, started):
    with pytest.raises(tf.TaskError) as ei:
        t.wait(timeout=HEARTBEAT + 30)
    took = time.monotonic() - started
    f = ei.value.failures[0]
    assert f.kind == "worker_died" and d.address in f.message, (f.kind, f.message)
    t0 = time.monotonic()
    try:  # drain() returns or reports the failure again; it must not hang
        w4.drain(timeout=30)
    except tf.TaskError as e:
        assert all(x.kind == "worker_died" for x in e.failures), e.failures
    assert time.monotonic() - t0 < 10
    return took


@pytest.mark.timeout(180)
def test_kill_9_of_the_daemon_fails_the_task_as_worker_died_within_the_heartbeat(make_worker, daemons, net):
    d = daemons()
    w4, h = level4(make_worker, d)
    t = w4.submit_next_level(h["orch_nap"], tf.TaskArgs().scalar(60.0))
    assert wait_until(lambda: probe("ready", d.address, d.token)["ready"]["live_slots"] >= 1, 30, 0.1), \
        "the long task never ran on the daemon"
    kids = d.descendants()
    assert kids and _netns_of(d.pid) != _netns_of(os.getpid())
    started = time.monotonic()
    d.kill(signal.SIGKILL)
    took = _fails_as_worker_died(w4, t, d, started)
    print(f"\nkill -9: the task failed as worker_died {took:.2f} s later")
    assert took <= HEARTBEAT + 2, f"the task failed {took:.1f} s after the daemon died (heartbeat {HEARTBEAT} s)"
    # the daemon's children die with it, and the namespace empties
    assert wait_until(lambda: not any(process_running(p) for p in kids), 15), "the daemon's children outlived it"
    assert wait_until(lambda: not net.pids(), 15), f"processes left in {net.name}: {net.pids()}"


@pytest.mark.timeout(180)
def test_a_silent_link_fails_the_task_as_worker_died_within_the_heartbeat(make_worker, daemons, net):
    """The veth goes down: no reset, no FIN, only silence; the client's
    liveness checks (keepalive pings, the session's beats) must notice."""
    d = daemons(extra=["--grace", "1"])
    w4, h = level4(make_worker, d)
    t = w4.submit_next_level(h["orch_nap"], tf.TaskArgs().scalar(20.0))
    assert wait_until(lambda: probe("ready", d.address, d.token)["ready"]["live_slots"] >= 1, 30, 0.1), \
        "the long task never ran on the daemon"
    started = time.monotonic()
    net.link("down")
    try:
        took = _fails_as_worker_died(w4, t, d, started)
    finally:
        net.link("up")
    print(f"\nlink down: the task failed as worker_died {took:.2f} s later")
    assert took <= HEARTBEAT + 3, f"the task failed {took:.1f} s after the link went silent (heartbeat {HEARTBEAT} s)"
    assert d.proc.poll() is None  # the daemon itself is fine
    # the link is back: the next task connects again and runs
    x = w4.share(np.arange(4, dtype=np.float64))
    out, c = w4.zeros(4, np.float64), w4.zeros(4, np.int64)
    t = w4.submit_next_level(h["orch_axpy"], tf.TaskArgs().input(x).input(x).output(out).inout(c).scalar(2.0))
    t.wait(timeout=60)
    np.testing.assert_array_equal(out, np.arange(4) * 3.0)
    np.testing.assert_array_equal(c, [1, 1, 1, 1])
    w4.close()
