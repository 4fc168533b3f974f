"""The bulk channel: large tensors on a plain TCP (or TLS) socket beside gRPC.

gRPC in Python copies every byte four times in user space (our chunk, its
buffer, its bytes object on the far side, our arena), which holds a 64 MiB
round trip to about a fifth of what the same socket moves with sendall and
recv_into (docs/performance.md). So tensors above the inline limit go
through a second port of the daemon, straight from the sender's arena into
the receiver's: `sendall(memoryview(array))` on one side,
`recv_into(memoryview(arena block))` on the other. gRPC keeps everything
else (control, small tensors, health, liveness).

The daemon reports the port in its Hello reply. The channel carries the
same token as the gRPC calls (checked in constant time before anything
else is read) and uses TLS whenever the daemon does. One connection per
client session, used by one transfer at a time.

Request (little-endian):  "TFD1" | op u8 ("U" upload, "D" download) |
    token length u16 | session length u8 | staged-id length u8 | nbytes u64 |
    token | session | staged id (download only)
    then, for an upload, the nbytes raw bytes.
Reply:  status u8 (0 ok) | text length u32 | text (the staged id of an
    upload, or the error) | for a download that is ok: nbytes u64, then
    the raw bytes.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import socket
import ssl
import struct
import threading
from typing import Any, Callable, Optional

import numpy as np

MAGIC = b"TFD1"
HEAD = struct.Struct("<4sBHBBQ")
REPLY = struct.Struct("<BI")
NBYTES = struct.Struct("<Q")
MAX_TOKEN = 4096
MAX_ID = 64
HEADER_TIMEOUT_S = 10.0      # a peer that does not send its header in time is dropped
log = logging.getLogger("tierflow.daemon")


class ChannelError(Exception):
    """A transfer on the bulk channel failed (the text says why)."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    _recv_into(sock, memoryview(buf))
    return bytes(buf)


def _recv_into(sock: socket.socket, mv: memoryview) -> None:
    pos, n = 0, len(mv)
    while pos < n:
        got = sock.recv_into(mv[pos:], min(n - pos, 1 << 24))
        if got == 0:
            raise ChannelError(f"the connection closed after {pos:,} of {n:,} bytes")
        pos += got


def _flat(a: np.ndarray) -> memoryview:
    return memoryview(a.reshape(-1).view(np.uint8))


# -- the daemon's side -----------------------------------------------------

class DataServer:
    """Accepts bulk connections; each runs in a thread of its own."""

    def __init__(self, host: str, port: int, token: str, *, sessions: Callable[[str], Any],
                 alloc: Callable[[int], np.ndarray], arena_bytes: int, max_connections: int,
                 tls: Optional[tuple] = None):
        self._token = token.encode()
        self._sessions = sessions
        self._alloc = alloc
        self._arena_bytes = arena_bytes
        self._slots = threading.BoundedSemaphore(max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._ctx = None
        if tls is not None:
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(tls[0], tls[1])
        self._stopped = False
        self.refused = 0

    def start(self) -> None:
        threading.Thread(target=self._accept, name="tierflow-data-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                conn.close()  # too many at once: the client falls back to gRPC streams
                continue
            threading.Thread(target=self._serve, args=(conn, peer), name="tierflow-data", daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Until its first request is authenticated, a connection gets
            # HEADER_TIMEOUT_S to speak; after that it may idle between
            # transfers for as long as its session lives.
            conn.settimeout(HEADER_TIMEOUT_S)
            if self._ctx is not None:
                conn = self._ctx.wrap_socket(conn, server_side=True)
            trusted = False
            while not self._stopped:
                conn.settimeout(None if trusted else HEADER_TIMEOUT_S)
                try:
                    head = _recv_exact(conn, HEAD.size)
                except (socket.timeout, ChannelError):
                    return
                if not self._one(conn, head, peer):
                    return
                trusted = True
        except (OSError, ssl.SSLError, ChannelError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self._slots.release()

    def _reply(self, conn, status: int, text: str) -> None:
        t = text.encode("utf-8", "replace")
        conn.sendall(REPLY.pack(status, len(t)) + t)

    def _one(self, conn, head: bytes, peer) -> bool:
        """One transfer; False ends the connection."""
        magic, op, tlen, slen, ilen, nbytes = HEAD.unpack(head)
        if magic != MAGIC or op not in (ord("U"), ord("D")) or tlen > MAX_TOKEN or slen > MAX_ID or ilen > MAX_ID:
            self._reply(conn, 1, "not a tierflow bulk-channel request")
            return False
        rest = _recv_exact(conn, tlen + slen + ilen)
        token, session, staged = rest[:tlen], rest[tlen:tlen + slen].decode("ascii", "replace"), \
            rest[tlen + slen:].decode("ascii", "replace")
        if not hmac.compare_digest(token, self._token):
            self.refused += 1
            log.warning("refused a bulk transfer from %s: missing or wrong token", peer)
            self._reply(conn, 2, "missing or wrong token")
            return False
        cs = self._sessions(session)
        if cs is None:
            self._reply(conn, 3, f"unknown session {session[:12]!r}")
            return False
        conn.settimeout(None if op == ord("D") else 60.0)
        if op == ord("U"):
            if not 0 < nbytes <= self._arena_bytes:
                self._reply(conn, 4, f"an upload is 1 to {self._arena_bytes:,} bytes (the arena), not {nbytes:,}")
                return False
            try:
                buf = self._alloc(nbytes)
            except MemoryError as e:
                self._reply(conn, 5, str(e))
                return False
            _recv_into(conn, _flat(buf))
            sid = secrets.token_hex(8)
            with cs.lock:
                cs.staged_in[sid] = buf
            self._reply(conn, 0, sid)
            return True
        with cs.lock:
            arr = cs.staged_out.pop(staged, None)
        if arr is None:
            self._reply(conn, 3, f"no staged output {staged[:16]!r} (each is fetched once)")
            return True
        self._reply(conn, 0, "")
        conn.sendall(NBYTES.pack(arr.nbytes))
        conn.sendall(_flat(np.ascontiguousarray(arr)))
        return True


# -- the client's side -----------------------------------------------------

class DataClient:
    """One client session's bulk connection, opened on first use."""

    def __init__(self, host: str, port: int, token: Optional[str], session: str, *, ca_file: Optional[str],
                 timeout: float):
        self._addr = (host, port)
        self._token = (token or "").encode()
        self._session = session.encode()
        self._ca = ca_file
        self._timeout = timeout
        self._sock = None

    def _connect(self):
        if self._sock is not None:
            return self._sock
        s = socket.create_connection(self._addr, timeout=self._timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ca:
            ctx = ssl.create_default_context(cafile=self._ca)
            s = ctx.wrap_socket(s, server_hostname=self._addr[0])
        self._sock = s
        return s

    def close(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _request(self, op: bytes, nbytes: int, staged: bytes = b""):
        s = self._connect()
        s.sendall(HEAD.pack(MAGIC, op[0], len(self._token), len(self._session), len(staged), nbytes) + self._token +
                  self._session + staged)
        return s

    def _status(self, s) -> str:
        status, n = REPLY.unpack(_recv_exact(s, REPLY.size))
        text = _recv_exact(s, n).decode("utf-8", "replace") if n else ""
        if status != 0:
            raise ChannelError(f"the daemon refused the transfer: {text}")
        return text

    def upload(self, arr: np.ndarray) -> str:
        """Sends the array's bytes; returns the daemon's staged id."""
        from .wire import contiguous_bytes
        try:
            s = self._request(b"U", arr.nbytes)
            s.sendall(contiguous_bytes(arr))
            return self._status(s)
        except BaseException:
            self.close()
            raise

    def download(self, staged: str, dest: np.ndarray) -> int:
        """Receives a staged output into `dest`; returns the bytes written."""
        try:
            s = self._request(b"D", 0, staged.encode())
            self._status(s)
            (n,) = NBYTES.unpack(_recv_exact(s, NBYTES.size))
            if n != dest.nbytes:
                raise ChannelError(f"the daemon sends {n:,} bytes for an output of {dest.nbytes:,}")
            if dest.flags.c_contiguous:
                _recv_into(s, _flat(dest))
            else:
                staging = np.empty(dest.nbytes, np.uint8)
                _recv_into(s, memoryview(staging))
                dest[...] = staging.view(dest.dtype).reshape(dest.shape)
            return n
        except BaseException:
            self.close()
            raise
