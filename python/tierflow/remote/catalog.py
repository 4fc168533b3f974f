"""Callables by content: how a client ships functions to a daemon, and how
the daemon's already-running children learn them.

Client side. Every callable an orch function may use — the template's subs
and kernels, the level-4 Worker's orch functions — travels as a payload: its
cloudpickle (a compiled kernel: its symbol and the shared library's bytes).
Its key is sha256(kind, NUL, payload). The client asks the daemon which
keys it lacks and pushes only those, so a payload crosses the network once
per daemon. A handle inside a pickled orch function pickles as its key
(`_Handle.__reduce__` calls `handle_key`), never as an index: the daemon
resolves it to its own handle for the same content.

Daemon side. Children learn callables by being forked, but a daemon's
children were forked before any client connected. So the daemon keeps every
payload in a heap of shared memory mapped before the fork (an anonymous
shared mapping: no file, gone with the last process that maps it) with a
table of (offset, length) per callable index. A child that meets an index it
has not loaded yet reads the payload there once, unpickles it and caches
it. The table entry is written before the first task that names the index is
posted, and posting a task publishes every earlier write to the child.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

KINDS = ("sub", "kernel", "native", "orch")
KEY_BYTES = 32


def key_of(kind: str, payload: bytes) -> bytes:
    """The catalog key of a payload: the same bytes give the same key."""
    h = hashlib.sha256(kind.encode())
    h.update(b"\0")
    h.update(payload)
    return h.digest()


class NativePayload:
    """What a compiled kernel ships as: its symbol and its library's bytes
    (so the daemon needs no copy of the library on its host)."""

    __slots__ = ("symbol", "library", "name")

    def __init__(self, symbol: str, library: bytes, name: str):
        self.symbol = symbol
        self.library = library
        self.name = name

    def __reduce__(self):
        return (NativePayload, (self.symbol, self.library, self.name))


# -- client side --------------------------------------------------------

_payloads: Dict[int, Tuple[Any, str, bytes, bytes]] = {}  # id(fn) -> (fn, kind, payload, key)
_payload_lock = threading.RLock()


def _cloudpickle():
    import cloudpickle
    return cloudpickle


def payload_of(fn: Any, kind: str) -> Tuple[str, bytes, bytes]:
    """(kind, payload, key) of a callable registered as `kind` ("sub",
    "kernel" or "orch"; a tf.NativeKernel becomes "native"). Computed once
    per function object in this process, so a handle and its template agree
    on the key. Raises TypeError naming the function if it does not pickle."""
    from ..native import NativeKernel
    with _payload_lock:
        hit = _payloads.get(id(fn))
        if hit is not None and hit[0] is fn and (hit[1] == kind or hit[1] == "native"):
            return hit[1], hit[2], hit[3]
        if isinstance(fn, NativeKernel):
            with open(fn.path, "rb") as f:
                library = f.read()
            kind = "native"
            payload = _cloudpickle().dumps(NativePayload(fn.symbol, library, os.path.basename(fn.path)))
        else:
            try:
                payload = _cloudpickle().dumps(fn, protocol=5)
            except Exception as e:
                name = getattr(fn, "__qualname__", repr(fn))
                raise TypeError(f"cannot ship {kind} function {name} to a tierflow daemon: it does not pickle with "
                                f"cloudpickle ({type(e).__name__}: {e}); a function sent to another host may "
                                f"capture only picklable values (no Worker, lock, file or socket)") from e
        key = key_of(kind, payload)
        _payloads[id(fn)] = (fn, kind, payload, key)
        return kind, payload, key


def forget_payloads() -> None:
    with _payload_lock:
        _payloads.clear()


def handle_key(handle: Any) -> Tuple[str, bytes]:
    from .._handles import KernelHandle, OrchHandle, SubHandle
    kind = {SubHandle: "sub", KernelHandle: "kernel", OrchHandle: "orch"}[type(handle)]
    kind, _payload, key = payload_of(handle.fn, kind)
    return kind, key


# -- daemon side --------------------------------------------------------

# The catalog of this process when it is a daemon: handles unpickle through it.
_current: Optional["Catalog"] = None


def resolve_handle(kind: str, key: bytes):
    """Unpickling a handle inside a daemon: the daemon's own handle for the
    callable with this content."""
    catalog = _current
    if catalog is None:
        raise RuntimeError("a tierflow handle sent by value can be resolved only inside a tierflow daemon")
    return catalog.handle(kind, key)


class SharedHeap:
    """Append-only bytes in an anonymous shared mapping made before the
    children fork, with one table of (offset, length) per callable kind."""

    _ENTRY = struct.Struct("=QQ")

    def __init__(self, nbytes: int, slots: int = 4096):
        self.slots = slots
        self._table_bytes = 2 * slots * self._ENTRY.size
        self.nbytes = nbytes
        self._map = mmap.mmap(-1, self._table_bytes + nbytes)  # MAP_SHARED | MAP_ANONYMOUS
        self._tables = np.frombuffer(self._map, dtype=np.uint64, count=2 * slots * 2).reshape(2, slots, 2)
        self._used = 0  # daemon only

    def put(self, table: int, index: int, payload: bytes) -> None:
        if index >= self.slots:
            raise MemoryError(f"the daemon's catalog holds at most {self.slots} callables of a kind")
        if self._used + len(payload) > self.nbytes:
            raise MemoryError(f"the daemon's catalog is full ({self.nbytes:,} bytes of callables); start the daemon "
                              f"with a larger --catalog-bytes")
        off = self._table_bytes + self._used
        self._map[off:off + len(payload)] = payload
        self._used += len(payload)
        # Length last: a reader that sees it sees the bytes (the task post in
        # between is a release, the child's wait an acquire).
        self._tables[table, index, 0] = off
        self._tables[table, index, 1] = len(payload)

    def get(self, table: int, index: int) -> Optional[bytes]:
        if index >= self.slots:
            return None
        off, n = int(self._tables[table, index, 0]), int(self._tables[table, index, 1])
        if n == 0:
            return None
        return bytes(self._map[off:off + n])

    @property
    def used(self) -> int:
        return self._used


class RuntimeCallables:
    """The callables of one kind of child (sub-workers or chips) of a
    daemon's Worker: a list that grows after the children were forked.

    In the daemon it is appended to; in a child, indexing loads a callable
    from the shared heap the first time and caches it. Iterating yields what
    this process has (nothing in a freshly forked child: there is nothing
    to prepare at start)."""

    def __init__(self, heap: SharedHeap, table: int, what: str):
        self._heap = heap
        self._table = table
        self._what = what
        self._names: List[str] = []   # daemon: one per index
        self._loaded: Dict[int, Callable] = {}

    # daemon
    def append_payload(self, payload: bytes, name: str) -> int:
        index = len(self._names)
        self._heap.put(self._table, index, payload)
        self._names.append(name)
        return index

    def names(self) -> List[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(())

    # child
    def __getitem__(self, index: int) -> Callable:
        fn = self._loaded.get(index)
        if fn is not None:
            return fn
        payload = self._heap.get(self._table, index)
        if payload is None:
            raise LookupError(f"this daemon's {self._what} has no callable #{index}")
        try:
            obj = _cloudpickle().loads(payload)
        except Exception as e:
            raise ImportError(f"the daemon could not load {self._what} callable #{index}: {type(e).__name__}: {e} "
                              f"(the daemon's Python environment lacks what the function imports: install it there, "
                              f"or ship the module by value with cloudpickle.register_pickle_by_value)") from e
        if isinstance(obj, NativePayload):
            obj = _materialise_native(obj)
        self._loaded[index] = obj
        return obj


def _materialise_native(p: NativePayload):
    """A library that arrived as bytes, loadable in this process: an
    anonymous memory file (nothing on disk, nothing to clean up)."""
    from ..native import NativeKernel
    fd = os.memfd_create(f"tierflow-{p.name}", 0)
    os.write(fd, p.library)
    return NativeKernel(f"/proc/self/fd/{fd}", p.symbol)


class Catalog:
    """The daemon's callables by key: sub and kernel payloads go into the
    children's RuntimeCallables; orch functions are unpickled here, in the
    daemon, on first use."""

    def __init__(self, worker: Any, heap: SharedHeap, subs: RuntimeCallables, kernels: RuntimeCallables):
        self._worker = worker
        self._heap = heap
        self._subs = subs
        self._kernels = kernels
        self._lock = threading.Lock()
        self._entries: Dict[bytes, Tuple[str, Any]] = {}  # key -> (kind, handle | orch payload)
        self._orch_fns: Dict[bytes, Callable] = {}
        self.pushed = 0  # payloads stored (a test counts them)

    def missing(self, keys: List[bytes]) -> List[bytes]:
        with self._lock:
            return [k for k in keys if k not in self._entries]

    def push(self, kind: str, key: bytes, payload: bytes, name: str) -> Tuple[bytes, bool]:
        """Stores a payload under its key (which must be its content's);
        returns (key, stored). Idempotent."""
        from .._handles import KernelHandle, SubHandle
        if kind not in KINDS:
            raise ValueError(f"unknown callable kind {kind!r}")
        if key_of(kind, payload) != key:
            raise ValueError("the key does not match the payload's sha256; the client must send "
                             "sha256(kind, NUL, payload)")
        with self._lock:
            if key in self._entries:
                return key, False
            if kind == "orch":
                self._entries[key] = (kind, payload)
            else:
                table = self._subs if kind == "sub" else self._kernels
                index = table.append_payload(payload, name or f"{kind} #{len(table)}")
                cls = SubHandle if kind == "sub" else KernelHandle
                self._entries[key] = (kind, cls(self._worker, index, _Placeholder(name)))
                engine = self._worker._engine
                if engine is not None:
                    engine.set_callable_names(0 if kind == "sub" else 1, table.names())
            self.pushed += 1
            return key, True

    def handle(self, kind: str, key: bytes):
        with self._lock:
            entry = self._entries.get(bytes(key))
        if entry is None:
            raise LookupError(f"the daemon has no {kind} callable with key {bytes(key).hex()[:16]}…; the client "
                              f"pushes every callable of its template before it opens a session")
        have, value = entry
        family = {"sub": "sub", "kernel": "kernel", "native": "kernel", "orch": "orch"}
        if family.get(have) != family.get(kind) or have == "orch":
            raise LookupError(f"catalog key {bytes(key).hex()[:16]}… is a {have} callable, not a {kind}")
        return value

    def orch(self, key: bytes) -> Callable:
        with self._lock:
            fn = self._orch_fns.get(key)
            entry = self._entries.get(key)
        if fn is not None:
            return fn
        if entry is None or entry[0] != "orch":
            raise LookupError(f"the daemon has no orch function with key {bytes(key).hex()[:16]}…; push it first")
        try:
            fn = _cloudpickle().loads(entry[1])
        except Exception as e:
            raise ImportError(f"the daemon could not load the orch function: {type(e).__name__}: {e} (the daemon's "
                              f"Python environment lacks what it imports: install it there, or ship the module "
                              f"by value with cloudpickle.register_pickle_by_value)") from e
        with self._lock:
            self._orch_fns[key] = fn
        return fn

    def stats(self) -> Dict[str, int]:
        return {"callables": len(self._entries), "catalog_bytes": self._heap.used, "pushed": self.pushed}


class _Placeholder:
    """The daemon does not run sub and kernel functions itself: its handles
    carry only their name."""

    __slots__ = ("__qualname__",)

    def __init__(self, name: str):
        self.__qualname__ = name

    def __repr__(self) -> str:
        return self.__qualname__


def install(catalog: Catalog) -> None:
    global _current
    _current = catalog
