"""tf.NativeKernel: a compiled chip kernel in a shared library, and
tf.get_include(), the folder holding its C ABI header (tierflow/kernel.h)."""
from __future__ import annotations

import ctypes
import os


def get_include() -> str:
    """The folder to add to the include path of a native kernel library."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def demo_kernels_path() -> str:
    """The example kernel library shipped with tierflow (used by tests and benchmarks)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_demo_kernels.so")


class NativeKernel:
    """`int symbol(const tf_args*, const tf_chip*)` in the shared library
    `path`. The library and symbol are checked here, so a typo fails at
    registration, naming both; each chip process loads the library once when
    it starts and calls the function without entering Python."""

    __slots__ = ("path", "symbol")

    def __init__(self, path: str, symbol: str):
        path = os.fspath(path)
        if not isinstance(symbol, str) or not symbol:
            raise TypeError("NativeKernel(path, symbol): symbol must be a non-empty str")
        if not os.path.exists(path):
            raise FileNotFoundError(f"native kernel library {path!r} does not exist (symbol {symbol!r})")
        self.path = os.path.abspath(path)
        self.symbol = symbol
        try:
            lib = ctypes.CDLL(self.path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError as e:
            raise ValueError(f"cannot load native kernel library {self.path!r} (symbol {symbol!r}): {e}") from None
        try:
            getattr(lib, symbol)
        except AttributeError:
            raise ValueError(f"native kernel symbol {symbol!r} not found in {self.path!r}") from None

    def __call__(self, *args):
        raise TypeError(f"{self!r} runs only on a chip: register it with w.register_kernel()")

    def __eq__(self, other) -> bool:
        """The same C function: same library file and symbol."""
        return isinstance(other, NativeKernel) and (self.path, self.symbol) == (other.path, other.symbol)

    def __hash__(self) -> int:
        return hash((self.path, self.symbol))

    def __repr__(self) -> str:
        return f"tf.NativeKernel({self.path!r}, {self.symbol!r})"
