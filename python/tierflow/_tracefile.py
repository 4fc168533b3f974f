"""Writing a Worker's trace as a Chrome Trace Event file (trace="run.json").

The engine records (graph/trace_recorder.h); this module only turns a
snapshot into the file, when the Worker closes or trace_flush() is called.

A trace is a list of *processes*, one per Worker of the tree: the Worker
itself, then — for a level-4 Worker — each of its local next-level Workers
(each wrote its own part when it closed, see `write_part`), depth first.
Each process has one thread per worker (sub-workers, then chips or
next-level workers), one complete slice per task run, stamped where the
task ran (CLOCK_MONOTONIC, one clock for the host), and the dependency
edges of its level.

What Perfetto needs and we guarantee: integer pids and tids, small and
sequential (pid 1 is the Worker traced; tids count from 1), process and
thread names and sort indices, slices of one thread that never overlap (a
worker runs one task at a time), and every flow point inside a slice (the
start of a flow just before its producer's slice ends, its end just after
its consumer's slice starts). One flow id per dependency edge.
"""
from __future__ import annotations

import gzip
import json
import os
import warnings
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from ._files import replacing

RUN = np.dtype([("task", "<u8"), ("t_start", "<i8"), ("t_end", "<i8"), ("bytes", "<u8"), ("worker", "<u4"),
                ("name", "<u4"), ("session", "<u4"), ("callable", "<u4"), ("attempt", "<u2"), ("outcome", "u1"),
                ("kind", "u1"), ("pad", "<u4")])
EDGE = np.dtype([("producer", "<u8"), ("consumer", "<u8")])
assert RUN.itemsize == 56 and EDGE.itemsize == 16
OUTCOMES = {0: "completed", 1: "exception", 2: "worker_died", 3: "timeout", 4: "cancelled", 5: "dependency_failed"}
FLOWS = ("all", "cross-worker", "none")
WARN_UNZIPPED_TASKS = 200_000  # 60-80 MB of JSON


def process_of(label: str, snapshot: Dict[str, Any]) -> Dict[str, Any]:
    """One process of the trace from an engine's trace_snapshot()."""
    runs = np.frombuffer(snapshot["runs"], dtype=RUN)
    edges = np.frombuffer(snapshot["edges"], dtype=EDGE)
    names = snapshot["names"]
    slices = [[int(r["worker"]) + 1, int(r["t_start"]), int(r["t_end"]), names[r["name"]], int(r["task"]),
               names[r["session"]], names[r["callable"]], int(r["bytes"]), OUTCOMES.get(int(r["outcome"]), "?"),
               int(r["attempt"])] for r in runs]
    return {"label": label, "threads": list(snapshot["workers"]), "slices": slices,
            "edges": edges.view(np.uint64).reshape(-1, 2).tolist() if len(edges) else [],
            "dropped": int(snapshot["dropped_runs"]) + int(snapshot["dropped_edges"])}


def session_process(label: str, snapshot: Dict[str, Any], session: str) -> Dict[str, Any]:
    """One session's share of an engine's trace (a daemon answers a client
    with its own tasks only)."""
    proc = process_of(label, snapshot)
    proc["slices"] = [s for s in proc["slices"] if s[5] == session]
    mine = {s[4] for s in proc["slices"]}
    proc["edges"] = [e for e in proc["edges"] if e[0] in mine and e[1] in mine]
    return proc


def shifted(proc: Dict[str, Any], delta_ns: int) -> Dict[str, Any]:
    """The process with its times moved by delta_ns (another host's clock
    onto this one's)."""
    proc = dict(proc)
    proc["slices"] = [[s[0], s[1] + delta_ns, s[2] + delta_ns, *s[3:]] for s in proc["slices"]]
    return proc


def write_part(path: str, processes: List[Dict[str, Any]]) -> None:
    """A next-level Worker's processes, for its parent to merge (written
    atomically, read once, then deleted by the parent)."""
    with replacing(path, ".part-") as tmp, open(tmp, "w") as f:
        json.dump(processes, f)


def read_parts(prefix: str) -> List[Dict[str, Any]]:
    """Every part written under `prefix` (one per process that served that
    next-level worker, replacements included), removed once read."""
    d, base = os.path.split(prefix)
    out: List[Dict[str, Any]] = []
    try:
        names = sorted(n for n in os.listdir(d) if n.startswith(base) and n.endswith(".json"))
    except FileNotFoundError:
        return out
    for n in names:
        p = os.path.join(d, n)
        try:
            with open(p) as f:
                out.extend(json.load(f))
        except (OSError, ValueError):
            continue
        finally:
            try:
                os.unlink(p)
            except OSError:
                pass
    return out


def _events(processes: List[Dict[str, Any]], flows: str) -> Iterable[Dict[str, Any]]:
    next_flow = 1
    for pid, proc in enumerate(processes, start=1):
        yield {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": proc["label"]}}
        yield {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        for tid, tname in enumerate(proc["threads"], start=1):
            yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tname}}
            yield {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": tid}}
        first: Dict[int, list] = {}
        last: Dict[int, list] = {}
        for s in proc["slices"]:
            tid, t0, t1, name, task, session, callable_, nbytes, outcome, attempt = s
            yield {"ph": "X", "name": name or callable_ or "task", "cat": "task", "pid": pid, "tid": tid,
                   "ts": t0 / 1000.0, "dur": max(0, t1 - t0) / 1000.0,
                   "args": {"task": task, "session": session, "callable": callable_, "bytes": nbytes,
                            "outcome": outcome, "attempt": attempt}}
            if task not in first or t0 < first[task][1]:
                first[task] = s
            if task not in last or t1 > last[task][2]:
                last[task] = s
        if flows == "none":
            continue
        for producer, consumer in proc["edges"]:
            p, c = last.get(producer), first.get(consumer)
            if p is None or c is None or (flows == "cross-worker" and p[0] == c[0]):
                continue  # a task that never ran (cancelled, or failed before) has no slice to point at
            p_len, c_len = max(0, p[2] - p[1]), max(0, c[2] - c[1])
            # Strictly inside each slice (points at an edge can be dropped).
            s_ts = (p[1] + p_len * 0.9) / 1000.0
            f_ts = (c[1] + c_len * 0.1) / 1000.0
            yield {"ph": "s", "id": next_flow, "cat": "dependency", "name": "dependency", "pid": pid, "tid": p[0],
                   "ts": s_ts}
            yield {"ph": "f", "bp": "e", "id": next_flow, "cat": "dependency", "name": "dependency", "pid": pid,
                   "tid": c[0], "ts": f_ts}
            next_flow += 1


def write(path: str, processes: List[Dict[str, Any]], *, worker: str, flows: str = "all") -> None:
    """Writes the trace file (gzip when the name ends in .gz), atomically."""
    tasks = sum(len(p["slices"]) for p in processes)
    if tasks > WARN_UNZIPPED_TASKS and not path.endswith(".gz"):
        warnings.warn(f"the trace of {worker} holds {tasks:,} task runs: about {tasks * 350 // 1_000_000} MB of "
                      f"JSON; name it {path}.gz to write it compressed (Perfetto opens both)", stacklevel=3)
    other = {"tierflow": _version(), "worker": worker, "clock": "CLOCK_MONOTONIC",
             "dropped": sum(p.get("dropped", 0) for p in processes)}
    with replacing(path, ".tierflow-trace-") as tmp:
        # Level 1: a third of level 9's time on a big trace, for a few percent of size.
        f = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) if path.endswith(".gz") else \
            open(tmp, "w", encoding="utf-8")
        with f:
            f.write('{"traceEvents":[\n')
            sep = ""
            for ev in _events(processes, flows):
                f.write(sep)
                f.write(json.dumps(ev, separators=(",", ":")))
                sep = ",\n"
            f.write('\n],"displayTimeUnit":"ms","otherData":')
            f.write(json.dumps(other))
            f.write("}\n")


def _version() -> str:
    from . import __version__
    return __version__


def check_path(trace: Optional[Any]) -> Optional[str]:
    if trace is None:
        return None
    if not isinstance(trace, (str, os.PathLike)):
        raise TypeError(f"trace= must be a file name ending in .json or .json.gz, got {type(trace).__name__}")
    path = os.path.abspath(os.fspath(trace))
    if not (path.endswith(".json") or path.endswith(".json.gz")):
        raise ValueError(f"trace={trace!r}: the file name must end in .json or .json.gz (Chrome Trace Event JSON)")
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"trace={trace!r}: the folder {d} does not exist")
    return path
