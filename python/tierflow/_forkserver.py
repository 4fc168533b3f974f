"""The fork server: the one process that forks chips and sub-workers.

Worker.init() maps the shared memory, then forks this server before any
engine thread exists. The server is single-threaded for its whole life, so
forking from it is always safe — also later, when the parent's engine threads
run and a dead child has to be replaced. It forks every child (the initial
ones at start, a replacement whenever the parent asks), reaps them, and
reports each birth and death to the parent over a SOCK_SEQPACKET socket:

    parent -> server   SPAWN index | QUIT
    server -> parent   SPAWNED index pid [+ output pipe read end, SCM_RIGHTS]
                       DIED index pid si_code si_status

Children set PR_SET_PDEATHSIG relative to the server and the server relative
to the parent, so a killed parent takes the whole tree with it. On QUIT (or
when the parent's end of the socket closes) the server kills and reaps every
child before it exits, so once the parent has reaped the server no child is
left.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
from typing import Callable, Dict, List, Sequence, Set, Tuple

from ._child import child_main, die_with_parent

MSG = struct.Struct("=IIiii")  # type, index, pid, code, status
SPAWN, QUIT = 1, 2
SPAWNED, DIED = 1, 2

# Parent-side descriptors of every live Worker in this process; a new fork
# server closes them all, so no pipe or socket stays open in a process that
# does not own it.
_parent_fds: Set[int] = set()
_fds_lock = threading.Lock()


def forget_fds(fds) -> None:
    with _fds_lock:
        for fd in fds:
            _parent_fds.discard(fd)


class _Server:
    def __init__(self, sock: socket.socket, plan: Sequence[Tuple[str, int, List[Callable]]], region, arena,
                 output: str):
        self.sock = sock
        self.plan = plan  # per mailbox: (kind name, index within kind, callables)
        self.region = region
        self.arena = arena
        self.output = output
        self.children: Dict[int, Tuple[int, int]] = {}  # pidfd -> (mailbox, pid)

    def spawn(self, mailbox: int) -> None:
        kind, index, fns = self.plan[mailbox]
        r = w = -1
        if self.output == "prefix":
            r, w = os.pipe()
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            inherited = [self.sock.fileno()] + list(self.children) + ([r] if r >= 0 else [])
            child_main(kind=kind, index=index, parent_pid=server_pid, mailbox=mailbox, region=self.region, arena=self.arena,
                       callables=fns, output=self.output, pipe_w=w, close_fds=inherited)
        if w >= 0:
            os.close(w)
        self.children[os.pidfd_open(pid)] = (mailbox, pid)
        msg = MSG.pack(SPAWNED, mailbox, pid, 0, 0)
        if r >= 0:
            socket.send_fds(self.sock, [msg], [r])
            os.close(r)
        else:
            self.sock.send(msg)

    def reap(self, pidfd: int) -> None:
        mailbox, pid = self.children.pop(pidfd)
        info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        os.close(pidfd)
        code, status = (info.si_code, info.si_status) if info is not None else (os.CLD_EXITED, -1)
        self.sock.send(MSG.pack(DIED, mailbox, pid, code, status))

    def quit(self) -> None:
        for pidfd, (_mailbox, _pid) in list(self.children.items()):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pidfd in list(self.children):
            try:
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
            except ChildProcessError:
                pass
            os.close(pidfd)
        self.children.clear()

    def serve(self) -> None:
        for mailbox in range(len(self.plan)):
            self.spawn(mailbox)
        while True:
            ready, _, _ = select.select([self.sock] + list(self.children), [], [])
            for fd in ready:
                if fd in self.children:
                    self.reap(fd)
                    continue
                data = self.sock.recv(MSG.size)
                if not data:  # the parent is gone
                    return
                kind, mailbox, _, _, _ = MSG.unpack(data)
                if kind == QUIT:
                    return
                if kind == SPAWN:
                    self.spawn(mailbox)


def start(*, subs: int, chips: int, region, arena, sub_fns: List[Callable], kernel_fns: List[Callable],
          output: str):
    """Forks the server; returns (server pid, server pidfd, parent socket fd,
    [(kind, index, pid, output fd) per mailbox])."""
    plan = [("sub", i, sub_fns) for i in range(subs)] + [("chip", i, kernel_fns) for i in range(chips)]
    parent_sock, server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    with _fds_lock:
        inherited = set(_parent_fds)
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the server: never returns
        code = 0
        try:
            parent_sock.close()
            die_with_parent(parent_pid)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            for fd in inherited:
                try:
                    os.close(fd)
                except OSError:
                    pass
            server = _Server(server_sock, plan, region, arena, output)
            try:
                server.serve()
            finally:
                server.quit()
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 70
        finally:
            os._exit(code)
    server_sock.close()
    pidfd = os.pidfd_open(pid)
    children = []
    try:
        for _ in plan:
            msg, fds, _flags, _addr = socket.recv_fds(parent_sock, MSG.size, 1)
            if not msg:
                raise RuntimeError("the tierflow fork server exited while starting the children")
            _type, mailbox, child_pid, _, _ = MSG.unpack(msg)
            children.append((plan[mailbox][0], plan[mailbox][1], child_pid, fds[0] if fds else -1))
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        os.close(pidfd)
        parent_sock.close()
        for c in children:
            if c[3] >= 0:
                os.close(c[3])
        raise
    sock_fd = parent_sock.detach()
    fds = [pidfd, sock_fd] + [c[3] for c in children if c[3] >= 0]
    with _fds_lock:
        _parent_fds.update(fds)
    return pid, pidfd, sock_fd, children, fds
