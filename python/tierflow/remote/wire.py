"""What both ends of the remote protocol share: versions, addresses, the
token's metadata, chunk framing, and tensors by value (with the checks the
daemon applies to every message it receives).

No module here imports grpc: the client's level-4 process and the fork
servers must never load it (gRPC does not survive fork)."""
from __future__ import annotations

import ipaddress
import math
import pickle
import sys
from typing import List, Optional, Tuple

import numpy as np

PROTOCOL = 1
SERVICE = "tierflow.remote.v1.Daemon"
CHUNK_BYTES = 1 << 20           # large tensors move in chunks of this size
MAX_INLINE_BYTES = 1 << 20      # a tensor of at most this size travels inside Run
MAX_INLINE_TOTAL = 8 << 20      # inline bytes of one Run message at most (the rest is staged)
MAX_MESSAGE_BYTES = 16 << 20    # the receive cap on both ends: a guard, above any message we send
MAX_TENSORS = 4096
MAX_DIMS = 8                    # the engine's kMaxDims (graph/tensor_desc.h)
HEALTH_SERVICE = ""             # the standard health service's name for the whole server
AUTH_KEY = "authorization"

TAGS = {1: "input", 2: "output", 3: "inout", 4: "no_dep"}
TAG_OF = {v: k for k, v in TAGS.items()}


class WireError(ValueError):
    """A message that breaks the protocol: its text goes back to the sender."""


def versions() -> dict:
    import cloudpickle
    from .. import __version__
    return {"protocol": PROTOCOL, "tierflow": __version__, "python": "%d.%d.%d" % sys.version_info[:3],
            "cloudpickle": cloudpickle.__version__, "numpy": np.__version__,
            "pickle_protocol": pickle.HIGHEST_PROTOCOL}


def version_mismatch(client: dict, daemon: dict) -> Optional[str]:
    """None when the two can work together; else a table of both sides.
    Pickled functions need the same protocol, Python minor version and
    cloudpickle; arrays the same numpy major version."""
    def minor(v: str) -> str:
        return ".".join(str(v).split(".")[:2])

    def major(v: str) -> str:
        return str(v).split(".")[0]

    rules = [("protocol", lambda a, b: a == b), ("python", lambda a, b: minor(a) == minor(b)),
             ("cloudpickle", lambda a, b: a == b), ("numpy", lambda a, b: major(a) == major(b)),
             ("tierflow", lambda a, b: True), ("pickle_protocol", lambda a, b: True)]
    bad = [k for k, ok in rules if not ok(client.get(k), daemon.get(k))]
    if not bad:
        return None
    rows = [f"  {'':16} {'client':>14} {'daemon':>14}"]
    for k, _ in rules:
        mark = "  <- differs" if k in bad else ""
        rows.append(f"  {k:16} {str(client.get(k)):>14} {str(daemon.get(k)):>14}{mark}")
    return ("versions differ (" + ", ".join(bad) + "); install the same versions on both hosts:\n" + "\n".join(rows))


def split_address(address: str) -> Tuple[str, int]:
    """("host", port) of "host:port" or "[v6]:port"; ValueError otherwise."""
    if not isinstance(address, str) or ":" not in address:
        raise ValueError(f"address must be 'host:port', got {address!r}")
    host, _, port_s = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"address {address!r}: the port {port_s!r} is not a number") from None
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"address must be 'host:port' with a port in 0..65535, got {address!r}")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_metadata(token: str) -> Tuple[Tuple[str, str], ...]:
    return ((AUTH_KEY, f"Bearer {token}"),)


# -- chunks: the Chunk message written and read without a protobuf object,
#    so a chunk's bytes are copied once on each side ---------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def chunk(data) -> bytes:
    """A serialised Chunk{data} holding `data` (bytes-like)."""
    return b"".join((b"\x0a", _varint(len(data)), data))


def chunk_data(message: bytes) -> memoryview:
    """The data of a serialised Chunk; WireError if it is not one."""
    mv = memoryview(message)
    if len(mv) == 0:
        return mv  # an empty Chunk (data = b"")
    if mv[0] != 0x0A:
        raise WireError("a chunk must be a Chunk message holding only field 1 (bytes)")
    n, shift, i = 0, 0, 1
    while True:
        if i >= len(mv) or shift > 35:
            raise WireError("a chunk's length is truncated or too long")
        b = mv[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if i + n != len(mv):
        raise WireError(f"a chunk says {n} bytes but carries {len(mv) - i}")
    return mv[i:]


# -- tensors by value ---------------------------------------------------

def dtype_of(text: str) -> np.dtype:
    try:
        dt = np.dtype(text)
    except (TypeError, ValueError):
        raise WireError(f"unknown dtype {text!r}") from None
    if dt.hasobject or dt.fields is not None or dt.itemsize == 0 or dt.kind not in "biufc":
        raise WireError(f"dtype {text!r} cannot be a task tensor (numbers and booleans only)")
    return dt


def check_tensor(tag: int, dtype: str, shape, nbytes: int, limit: int) -> Tuple[np.dtype, Tuple[int, ...]]:
    """Validates one tensor description from the wire."""
    if tag not in TAGS:
        raise WireError(f"unknown tensor tag {tag}")
    dt = dtype_of(dtype)
    dims = tuple(int(d) for d in shape)
    if len(dims) > MAX_DIMS:
        raise WireError(f"a tensor has {len(dims)} dimensions; at most {MAX_DIMS}")
    size = math.prod(dims) * dt.itemsize
    if size != nbytes:
        raise WireError(f"shape {dims} of {dt} is {size} bytes but the message says {nbytes}")
    if nbytes > limit:
        raise WireError(f"a tensor of {nbytes:,} bytes does not fit the daemon's arena of {limit:,} bytes")
    return dt, dims


def contiguous_bytes(a: np.ndarray):
    """The bytes of an array in C order, without a copy when it is contiguous."""
    if a.flags.c_contiguous:
        return memoryview(a.reshape(-1).view(np.uint8))
    return memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def chunks_of(a: np.ndarray, size: int = CHUNK_BYTES):
    """Serialised Chunk messages of an array's bytes, in order."""
    mv = contiguous_bytes(a)
    for off in range(0, len(mv), size):
        yield chunk(mv[off:off + size])


def into(dest: np.ndarray, pieces) -> int:
    """Writes a stream of byte pieces into `dest` in C order; returns the
    bytes written (the caller checks the count)."""
    flat = dest.reshape(-1).view(np.uint8) if dest.flags.c_contiguous else None
    staging = None if flat is not None else np.empty(dest.nbytes, np.uint8)
    target = flat if flat is not None else staging
    pos = 0
    for piece in pieces:
        n = len(piece)
        if pos + n > len(target):
            raise WireError(f"the stream carries more than the {len(target)} bytes expected")
        target[pos:pos + n] = np.frombuffer(piece, dtype=np.uint8)
        pos += n
    if staging is not None and pos == len(staging):
        dest[...] = staging.view(dest.dtype).reshape(dest.shape)
    return pos


def tensor_list(args) -> List[Tuple[int, np.ndarray]]:
    """(wire tag, array) of every tensor of a received tf.TaskArgs."""
    out = []
    for i in range(args.num_tensors):
        tag = args.tag(i)
        out.append((TAG_OF[tag.name.lower()], args.tensor(i)))
    return out


def scalar_list(args) -> list:
    return [args.scalar(i) for i in range(args.num_scalars)]
