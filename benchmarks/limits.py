"""The machine's own limits, measured in the same run: a futex round trip
between two processes (in C, built by the project, and from Python), and
W3 done by one process with numpy."""
import ctypes
import mmap
import os
import time

import numpy as np

MiB = 1 << 20
_SYS_FUTEX = 202 if os.uname().machine == "x86_64" else 98
_WAIT, _WAKE = 0, 1


def _pingpong_library() -> str:
    """Builds limits/futex_pingpong.c once (it is the benchmarks', not the
    package's) into a cache next to the results; returns the library path."""
    import shutil
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(here, "limits", "futex_pingpong.c")
    out_dir = os.path.join(here, "results", ".build")
    lib = os.path.join(out_dir, "futex_pingpong.so")
    if not os.path.exists(lib) or os.path.getmtime(lib) < os.path.getmtime(src):
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("the C futex limit needs a C compiler (cc)")
        os.makedirs(out_dir, exist_ok=True)
        subprocess.run([cc, "-O2", "-shared", "-fPIC", src, "-o", lib], check=True)
    return lib


def futex_roundtrip_c_ns(iterations=100_000):
    lib = ctypes.CDLL(_pingpong_library())
    lib.tf_futex_roundtrip_ns.restype = ctypes.c_double
    lib.tf_futex_roundtrip_ns.argtypes = [ctypes.c_int]
    return lib.tf_futex_roundtrip_ns(iterations)


def futex_roundtrip_py_ns(iterations=20_000):
    libc = ctypes.CDLL(None, use_errno=True)
    mm = mmap.mmap(-1, 4096)
    # A list, so the buffer export can be dropped before mm.close().
    cell = [ctypes.c_uint32.from_buffer(mm)]
    addr = ctypes.addressof(cell[0])
    cell[0].value = 2

    def wait(want):
        while True:
            v = cell[0].value
            if v == want:
                return
            libc.syscall(_SYS_FUTEX, ctypes.c_void_p(addr), _WAIT, v, None, None, 0)

    def give(to):
        cell[0].value = to
        libc.syscall(_SYS_FUTEX, ctypes.c_void_p(addr), _WAKE, 1, None, None, 0)

    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(iterations):
                wait(0)
                give(1)
        finally:
            os._exit(0)
    t0 = time.perf_counter()
    for _ in range(iterations):
        give(0)
        wait(1)
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    cell.clear()
    mm.close()
    return dt / iterations * 1e9


def w3_numpy_single_process_s(k=64, nbytes=8 * MiB):
    n = nbytes // 4
    t0 = time.perf_counter()
    parts = [np.full(n, i, np.float32) for i in range(k)]
    out = parts[0].copy()
    for p in parts[1:]:
        out += p
    dt = time.perf_counter() - t0
    assert np.all(out == k * (k - 1) / 2)
    return dt
