"""tierflow: hierarchical task graphs over processes and machines.

Write an orchestration function that submits tasks; each task names its
tensors as input, output or inout and the engine infers every dependency, so
the result equals running the tasks one by one in submission order. Tasks run
on forked chip and sub-worker processes that share tensors zero-copy through a
shared-memory arena.
"""
from ._core import Tag, TaskArgs
from ._child import BarrierBroken, ChipContext
from ._errors import (
    ArenaExhausted,
    Failure,
    InvalidWorkerIndex,
    NativeKernelError,
    RemoteError,
    RemoteTraceback,
    TaskError,
    WindowExhausted,
    WorkerClosed,
    WorkerStateError,
)
from ._futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait
from ._handles import KernelHandle, OrchHandle, SubHandle
from ._task import Task
from .native import NativeKernel, get_include
from .orchestrator import Orchestrator
from .session import Session
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED", "ArenaExhausted", "BarrierBroken", "ChipContext", "FIRST_COMPLETED", "FIRST_EXCEPTION", "Failure",
    "InvalidWorkerIndex", "KernelHandle", "NativeKernel", "NativeKernelError", "OrchHandle", "Orchestrator",
    "RemoteError", "RemoteTraceback", "Session", "SubHandle", "Tag", "Task", "TaskArgs", "TaskError", "WindowExhausted", "Worker",
    "WorkerClosed", "WorkerStateError", "as_completed", "get_include", "wait",
]
