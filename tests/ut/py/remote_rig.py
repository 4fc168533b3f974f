"""Daemons for the remote tests: `tierflow daemon` started as a subprocess
on loopback (port 0, so tests never collide), its token and ready files in
the test's tmp_path, stopped and checked at the end: no process of it left,
no /dev/shm entry it made.

The pytest process itself never imports grpc (a process that has gRPC
threads must not fork, and the tests fork Workers all along): tests that
speak raw gRPC run `grpc_probe.py` in a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import List, Optional

from conftest import descendants_of, process_running, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "grpc_probe.py")


def shm_entries() -> set:
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


class Daemon:
    """One `tierflow daemon` subprocess."""

    def __init__(self, tmp_path, *, chips: int = 2, sub_workers: int = 1, listen: str = "127.0.0.1:0",
                 extra: Optional[List[str]] = None, token: Optional[str] = None, arena_bytes: int = 1 << 27,
                 prefix: Optional[List[str]] = None, name: str = "daemon", start: bool = True):
        self.dir = tmp_path
        self.name = name
        self.token_file = os.path.join(str(tmp_path), f"{name}.token")
        self.ready_file = os.path.join(str(tmp_path), f"{name}.ready.json")
        self.log_file = os.path.join(str(tmp_path), f"{name}.log")
        if token is not None:
            with open(self.token_file, "w") as f:
                f.write(token)
            os.chmod(self.token_file, 0o600)
        self.argv = [*(prefix or []), sys.executable, "-m", "tierflow", "daemon", "--listen", listen, "--chips",
                     str(chips), "--sub-workers", str(sub_workers), "--arena-bytes", str(arena_bytes),
                     "--token-file", self.token_file, "--ready-file", self.ready_file, "--grace", "5",
                     *(extra or [])]
        self.proc: Optional[subprocess.Popen] = None
        self.shm_before = shm_entries()
        self.ready: dict = {}
        if start:
            self.start()

    def start(self, timeout: float = 60.0) -> "Daemon":
        try:
            os.unlink(self.ready_file)
        except FileNotFoundError:
            pass
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ready_file):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the daemon did not become ready in {timeout} s:\n{self.log()}")
            time.sleep(0.02)
        with open(self.ready_file) as f:
            self.ready = json.load(f)
        return self

    @property
    def address(self) -> str:
        return self.ready["address"]

    @property
    def token(self) -> str:
        with open(self.token_file) as f:
            return f.read().strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(self.log_file, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def descendants(self) -> set:
        return descendants_of(self.proc.pid) if self.proc is not None else set()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code; SIGKILL after `timeout`."""
        if self.proc is None:
            return 0
        kids = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        assert wait_until(lambda: not any(process_running(p) for p in kids), 10), \
            f"processes of the daemon outlived it: {[p for p in kids if process_running(p)]}"
        self._log.close()
        return code

    def stop_ok(self, timeout: float = 30.0) -> None:
        """stop(), asserting a clean exit; a failure carries the daemon's log
        (what a flaky run needs to be understood afterwards)."""
        code = self.stop(timeout)
        assert code == 0, f"the daemon exited with {code}; its log:\n{self.log()[-20000:]}"

    def restart(self) -> "Daemon":
        """Starts it again on the same port (as a supervisor would)."""
        host, _, port = self.address.rpartition(":")
        i = self.argv.index("--listen")
        self.argv[i + 1] = f"{host}:{port}"
        return self.start()

    def assert_clean(self) -> None:
        leaked = shm_entries() - self.shm_before
        assert not leaked, f"/dev/shm entries left: {leaked}"


def probe(*args: str, timeout: float = 60.0) -> dict:
    """Runs grpc_probe.py with `args` in a subprocess; returns its JSON answer."""
    r = subprocess.run([sys.executable, PROBE, *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"grpc_probe {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])
