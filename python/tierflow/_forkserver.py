"""The fork server: the one process that forks chips and sub-workers.

Worker.init() maps the shared memory, then forks this server before any
engine thread of that Worker exists. The server is single-threaded for its
whole life, so forking from it is always safe — also later, when the
parent's engine threads run and a dead child has to be replaced. It forks
every child (the initial ones at start, a replacement whenever the parent
asks), reaps them, and reports each birth and death to the parent over a
SOCK_SEQPACKET socket:

    parent -> server   SPAWN index | KILL index | QUIT
    server -> parent   SPAWNED index pid [+ output pipe read end, SCM_RIGHTS]
                       DIED index pid si_code si_status

The server watches its parent through a pidfd: a process-wide handle,
unlike PR_SET_PDEATHSIG, which fires when the *thread* that forked exits —
a Worker initialised in a short-lived thread would lose its pool. Children
set PR_SET_PDEATHSIG relative to the single-threaded server. So when the
parent dies the server kills and reaps every child and exits, and when the
server dies every child dies with it.

Every forked tierflow process starts clean: it closes every descriptor it
inherited but does not need, and drops the mappings of other Workers'
arenas and control regions (their memory is freed once their own users
exit).
"""
from __future__ import annotations

import gc
import os
import select
import signal
import socket
import struct
import sys
import weakref
from typing import Any, Callable, Dict, List, Sequence, Tuple

from . import _child
from ._child import child_main, close_fds_except

MSG = struct.Struct("=IIiii")  # type, index, pid, code, status
SPAWN, QUIT, KILL = 1, 2, 3
SPAWNED, DIED = 1, 2

# Every shared mapping this process holds (arenas, control regions); a new
# fork server keeps only its own Worker's.
_mappings: "weakref.WeakSet" = weakref.WeakSet()


def register_mapping(obj) -> None:
    _mappings.add(obj)


def _forget_other_mappings(keep) -> None:
    keep_ids = {id(k) for k in keep}
    for m in list(_mappings):
        if id(m) not in keep_ids:
            m.forget_mapping()


class _Server:
    def __init__(self, sock: socket.socket, parent_pidfd: int, plan: Sequence[Tuple[str, int, List[Callable], Any]],
                 region, arena, ancestors: List[Any], output: str, out_path: str):
        self.sock = sock
        self.parent_pidfd = parent_pidfd
        self.plan = plan  # per mailbox: (kind name, index within kind, callables, template Worker or None)
        self.region = region
        self.arena = arena
        self.ancestors = ancestors
        self.output = output
        self.out_path = out_path
        self.children: Dict[int, Tuple[int, int]] = {}  # pidfd -> (mailbox, pid)

    def spawn(self, mailbox: int) -> None:
        kind, index, fns, template = self.plan[mailbox]
        r = w = -1
        if self.output == "prefix":
            r, w = os.pipe()
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            child_main(kind=kind, index=index, parent_pid=server_pid, mailbox=mailbox, region=self.region,
                       arena=self.arena, ancestors=self.ancestors, callables=fns, output=self.output, pipe_w=w,
                       template=template, out_path=self.out_path)
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

    def kill(self, mailbox: int) -> None:
        for pidfd, (mb, _pid) in self.children.items():
            if mb == mailbox:
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def quit(self) -> None:
        for pidfd in list(self.children):
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
            ready, _, _ = select.select([self.sock, self.parent_pidfd] + list(self.children), [], [])
            for fd in ready:
                if fd == self.parent_pidfd:  # the parent process is gone
                    return
                if fd in self.children:
                    self.reap(fd)
                    continue
                data = self.sock.recv(MSG.size)
                if not data:  # the parent closed its end
                    return
                kind, mailbox, _, _, _ = MSG.unpack(data)
                if kind == QUIT:
                    return
                if kind == SPAWN:
                    self.spawn(mailbox)
                elif kind == KILL:
                    self.kill(mailbox)


def _server_main(server_sock: socket.socket, parent_pid: int, plan, region, arena, ancestors, output: str,
                 out_path: str) -> None:
    code = 0
    try:
        # Objects inherited from the parent are never finalized here: their
        # finalizers could take locks another parent thread held at the fork.
        gc.disable()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        parent_pidfd = os.pidfd_open(parent_pid)
        if os.getppid() != parent_pid:  # the parent died before we could watch it
            os._exit(1)
        close_fds_except([server_sock.fileno(), parent_pidfd, _child.root_out_fd])
        _forget_other_mappings([region, arena, *ancestors])
        server = _Server(server_sock, parent_pidfd, plan, region, arena, ancestors, output, out_path)
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


def start(*, subs: List[Tuple], nexts: List[Tuple], region, arena, ancestors: List[Any], output: str,
          out_path: str):
    """Forks the server and waits for its children; returns (server pid,
    server pidfd, parent socket fd, [(kind, index, pid, output fd)]). The
    plan has one (kind name, index, callables, template) per child: subs
    first, then the next level (chips, or Workers built from their
    templates). `ancestors`: the arenas of the levels above this one, which
    every child keeps mapped. On any failure the server (and with it every
    child) is killed and every descriptor closed before the exception
    propagates."""
    plan = list(subs) + list(nexts)
    parent_sock, server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    sys.stderr.flush()
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the server: never returns
        parent_sock.close()
        _server_main(server_sock, parent_pid, plan, region, arena, ancestors, output, out_path)
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
    return pid, pidfd, parent_sock.detach(), children
