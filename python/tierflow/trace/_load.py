"""Reading a tierflow trace (Chrome Trace Event JSON, plain or gzipped) into columns.

A Worker started with `trace="run.json"` (or "run.json.gz") writes one
object: {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}.
The events this module understands are the ones tierflow writes:

- "M" metadata: process_name / process_sort_index (tid 0) and thread_name /
  thread_sort_index, which name and order the tracks (one track per
  (pid, tid): a worker inside a Worker's process);
- "X" complete slices, one per task run (per attempt, per group member), with
  args task / session / callable / bytes / outcome / attempt;
- "s" / "f" flow events of category "dependency", one id per edge, the "s"
  inside the producer's slice and the "f" inside the consumer's.

Anything else (other phases, other flow categories) is counted and ignored,
so a trace edited in Perfetto or merged with other tools still loads.

Why columns: a long run records millions of slices. As Python objects they
would take gigabytes and make every statistic a slow loop; as numpy arrays
(one per field, strings replaced by indices into one table) a million slices
take tens of megabytes and the summary and the plot work on whole arrays.

Why warnings rather than errors for bad events: a trace is a diagnostic of a
run that may itself have gone wrong, so one bad event should not hide the
other million. Each kind of problem is counted under a fixed message in
`Trace.warnings`, and the summary prints the counts. Only a file that is not
a trace at all (unreadable, not JSON, no "traceEvents") raises TraceError. A
file cut short (the writer killed mid-way) is read up to the last whole
event, with a warning.
"""
from __future__ import annotations

import gc
import math
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from ._read import Document, TraceError, read_text

DEPENDENCY = "dependency"
"""The category of tierflow's dependency flow events."""

# Fixed warning messages (the keys of Trace.warnings).
W_NOT_OBJECT = "event that is not a JSON object (ignored)"
W_BAD_SLICE = "slice without a numeric ts and dur or without pid/tid (ignored)"
W_BAD_DUR = "slice with a non-finite ts or a negative or non-finite duration (ignored)"
W_BAD_FLOW = "flow event without an id, pid/tid or numeric ts (ignored)"
W_FLOW_NO_FINISH = "flow start without a matching finish (ignored)"
W_FLOW_NO_START = "flow finish without a matching start (ignored)"
W_FLOW_DUP = "flow id started (or finished) twice before its pair was complete (the later one ignored)"
W_TRUNCATED = "file is cut short (read up to the last whole event)"
W_OTHER = "event of a kind tierflow does not write (ignored)"
W_TRAILING = "text after the end of the trace object (ignored)"



@dataclass(frozen=True)
class Track:
    """One timeline lane: a worker (thread id `tid`) inside a process (`pid`)."""
    pid: Any
    tid: Any
    process: str
    thread: str
    process_sort: float
    thread_sort: float

    @property
    def label(self) -> str:
        return f"{self.process} \u203a {self.thread}"


@dataclass
class Trace:
    """A loaded trace: tracks in display order, slices and flows as columns.

    Slices are sorted by (track, ts); every slice column has one entry per
    slice. Times are microseconds as in the file (ts on the recorder's
    clock, see meta["clock"]). String columns (name, callable, session,
    outcome) hold indices into `strings`. Missing integer args are -1.
    Flows are the matched start/finish pairs of the dependency category:
    the track and ts of the start (producer side) and of the finish
    (consumer side); which slices they point into is worked out by
    critical path code, which also reports points that lie in no slice.
    """
    path: str
    meta: Dict[str, Any]
    tracks: List[Track]
    strings: List[str]
    track: np.ndarray      # int32, index into tracks
    ts: np.ndarray         # float64 µs
    dur: np.ndarray        # float64 µs
    name: np.ndarray       # int32, index into strings
    callable: np.ndarray   # int32, index into strings
    session: np.ndarray    # int32, index into strings
    outcome: np.ndarray    # int32, index into strings
    task: np.ndarray       # int64
    attempt: np.ndarray    # int64
    nbytes: np.ndarray     # int64, the slice's tensor bytes (args.bytes)
    flow_src_track: np.ndarray
    flow_src_ts: np.ndarray
    flow_dst_track: np.ndarray
    flow_dst_ts: np.ndarray
    warnings: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def start(self) -> float:
        """The first slice's start (µs), 0.0 for a trace without slices."""
        return float(self.ts.min()) if len(self) else 0.0

    @property
    def end(self) -> float:
        """The last slice end (µs), 0.0 for a trace without slices."""
        return float((self.ts + self.dur).max()) if len(self) else 0.0


def load(path: str) -> Trace:
    """Read the trace file at `path` (.json or .json.gz: gzip is recognised by
    its magic bytes, not the name). Raises TraceError for a file that is not
    a trace; problems with single events become counted warnings."""
    path = os.fspath(path)
    # Parsing builds millions of small dicts that hold no reference cycles;
    # left on, the cyclic collector would walk them again and again (about
    # half the load time of a large trace). They are freed by reference
    # counting, so it is off only while loading.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(path)
    finally:
        if collecting:
            gc.enable()


def _load(path: str) -> Trace:
    warnings: Counter = Counter()
    doc = Document(path, read_text(path))
    trace = _build(path, doc.events(), warnings)
    if not doc.has_events:
        if "traceEvents" in doc.other:
            raise TraceError(f"{path}: \"traceEvents\" is a {type(doc.other['traceEvents']).__name__}, not a list")
        raise TraceError(f"{path}: no \"traceEvents\" list: not a Chrome trace "
                         f"(keys: {', '.join(sorted(doc.other)) or 'none'})")
    if doc.truncated:
        warnings[W_TRUNCATED] += 1
    if doc.trailing:
        warnings[W_TRAILING] += 1
    meta = doc.other.get("otherData")
    trace.meta = dict(meta) if isinstance(meta, dict) else {}
    return trace


def _sort_key(value: Any) -> Tuple[int, float, str]:
    """Orders ids and sort indices that should be numbers but may not be."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _build(path: str, events: Iterable[Any], warnings: Counter) -> Trace:
    """One pass over the events into growing arrays, then numpy columns in
    (track, ts) order. Written as a flat loop with local names because it
    runs once per event (millions of times)."""
    track_of: Dict[Tuple[Any, Any], int] = {}
    keys: List[Tuple[Any, Any]] = []
    string_id: Dict[str, int] = {}
    strings: List[str] = []

    def sid(value: Any) -> int:
        if not isinstance(value, str):
            value = "?" if value is None else str(value)
        i = string_id.get(value)
        if i is None:
            i = string_id[value] = len(strings)
            strings.append(value)
        return i

    def tid_of(key: Tuple[Any, Any]) -> int:
        i = track_of.get(key)
        if i is None:
            i = track_of[key] = len(keys)
            keys.append(key)
        return i

    s_track, s_ts, s_dur = array("q"), array("d"), array("d")
    s_name, s_call, s_sess, s_out = array("q"), array("q"), array("q"), array("q")
    s_task, s_att, s_bytes = array("q"), array("q"), array("q")
    process_name: Dict[Any, str] = {}
    process_sort: Dict[Any, Any] = {}
    thread_name: Dict[Tuple[Any, Any], str] = {}
    thread_sort: Dict[Tuple[Any, Any], Any] = {}
    starts: Dict[Any, Tuple[int, float]] = {}     # flow id -> (track, ts), waiting for its finish
    finishes: Dict[Any, Tuple[int, float]] = {}   # flow id -> (track, ts), waiting for its start
    f_src_track, f_src_ts, f_dst_track, f_dst_ts = array("q"), array("d"), array("q"), array("d")
    isfinite = math.isfinite

    def as_int(value: Any) -> int:
        """An int arg as int64; -1 when missing, not an integer or out of range."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
            return int(value)          # also True/False -> 1/0
        return -1

    track_get, sget = track_of.get, string_id.get
    lo_int, hi_int = -(1 << 63), (1 << 63) - 1
    for ev in events:
        if type(ev) is not dict:
            warnings[W_NOT_OBJECT] += 1
            continue
        ph = ev.get("ph")
        if ph == "X":
            # The hot loop (once per slice): subscripts and type checks inline,
            # function calls only for what tierflow does not write. ts and dur
            # are checked for finiteness on the whole column afterwards.
            try:
                ts = ev["ts"] * 1.0                 # a number (not a string, not null)
                dur = ev["dur"] * 1.0
                key = (ev["pid"], ev["tid"])
                track = track_get(key)
                if track is None:
                    track = tid_of(key)
            except (KeyError, TypeError, ValueError, OverflowError):
                warnings[W_BAD_SLICE] += 1
                continue
            try:
                args = ev["args"]
                name, call, sess, out = ev["name"], args["callable"], args["session"], args["outcome"]
                task, att, nb = args["task"], args["attempt"], args["bytes"]
            except (KeyError, TypeError):       # some field missing, or args not an object
                args = ev.get("args")
                if type(args) is not dict:
                    args = {}
                name, call, sess, out = ev.get("name"), args.get("callable"), args.get("session"), args.get("outcome")
                task, att, nb = args.get("task"), args.get("attempt"), args.get("bytes")
            i_name = sget(name) if type(name) is str else None
            if i_name is None:
                i_name = sid(name)
            i_call = sget(call) if type(call) is str else None
            if i_call is None:
                i_call = sid(call)
            i_sess = sget(sess) if type(sess) is str else None
            if i_sess is None:
                i_sess = sid(sess)
            i_out = sget(out) if type(out) is str else None
            if i_out is None:
                i_out = sid(out)
            if type(task) is not int or not lo_int <= task <= hi_int:
                task = as_int(task)
            if type(att) is not int or not lo_int <= att <= hi_int:
                att = as_int(att)
            if type(nb) is not int or not lo_int <= nb <= hi_int:
                nb = as_int(nb)
            s_track.append(track)
            s_ts.append(ts)
            s_dur.append(dur)
            s_name.append(i_name)
            s_call.append(i_call)
            s_sess.append(i_sess)
            s_out.append(i_out)
            s_task.append(task)
            s_att.append(att)
            s_bytes.append(nb)
        elif ph == "s" or ph == "f":
            if ev.get("cat", DEPENDENCY) != DEPENDENCY:
                warnings[W_OTHER] += 1
                continue
            try:
                fid = ev["id"]
                ts = ev["ts"] * 1.0
                key = (ev["pid"], ev["tid"])
                track = track_get(key)
                if track is None:
                    track = tid_of(key)
                hash(fid)                   # usable as a dict key
            except (KeyError, TypeError, ValueError, OverflowError):
                warnings[W_BAD_FLOW] += 1
                continue
            if not isfinite(ts):
                warnings[W_BAD_FLOW] += 1
                continue
            mine, other = (starts, finishes) if ph == "s" else (finishes, starts)
            if fid in mine:            # a second start (or finish) before the pair is complete
                warnings[W_FLOW_DUP] += 1
                continue
            peer = other.pop(fid, None)
            if peer is None:
                mine[fid] = (track, ts)
                continue
            if ph == "s":
                (src_track, src_ts), (dst_track, dst_ts) = (track, ts), peer
            else:
                (src_track, src_ts), (dst_track, dst_ts) = peer, (track, ts)
            f_src_track.append(src_track)
            f_src_ts.append(src_ts)
            f_dst_track.append(dst_track)
            f_dst_ts.append(dst_ts)
        elif ph == "M":
            name = ev.get("name")
            args = ev.get("args") if isinstance(ev.get("args"), dict) else {}
            pid, tid = ev.get("pid"), ev.get("tid")
            try:
                if name == "process_name":
                    process_name[pid] = str(args.get("name", pid))
                elif name == "process_sort_index":
                    process_sort[pid] = args.get("sort_index")
                elif name == "thread_name":
                    thread_name[(pid, tid)] = str(args.get("name", tid))
                    tid_of((pid, tid))
                elif name == "thread_sort_index":
                    thread_sort[(pid, tid)] = args.get("sort_index")
                else:
                    warnings[W_OTHER] += 1
            except TypeError:          # an unhashable pid or tid
                warnings[W_OTHER] += 1
        else:
            warnings[W_OTHER] += 1
    if starts:
        warnings[W_FLOW_NO_FINISH] += len(starts)
    if finishes:
        warnings[W_FLOW_NO_START] += len(finishes)

    # Tracks in display order: process sort index, pid, thread sort index, tid.
    def order_key(i: int):
        pid, tid = keys[i]
        return (_sort_key(process_sort.get(pid, pid)), _sort_key(pid),
                _sort_key(thread_sort.get((pid, tid), tid)), _sort_key(tid))

    order = sorted(range(len(keys)), key=order_key)
    tracks = []
    for i in order:
        pid, tid = keys[i]
        psort, tsort = _sort_key(process_sort.get(pid, pid)), _sort_key(thread_sort.get((pid, tid), tid))
        tracks.append(Track(pid=pid, tid=tid,
                            process=process_name.get(pid, f"pid {pid}"),
                            thread=thread_name.get((pid, tid), f"tid {tid}"),
                            process_sort=psort[1] if psort[0] == 0 else math.inf,
                            thread_sort=tsort[1] if tsort[0] == 0 else math.inf))
    remap = np.empty(len(keys), dtype=np.int32)
    remap[np.asarray(order, dtype=np.int64)] = np.arange(len(keys), dtype=np.int32)

    def col(a: array, dtype) -> np.ndarray:
        return np.frombuffer(a, dtype=dtype).astype(dtype, copy=True) if len(a) else np.zeros(0, dtype)

    track_col = remap[col(s_track, np.int64)] if len(s_track) else np.zeros(0, np.int32)
    ts_col, dur_col = col(s_ts, np.float64), col(s_dur, np.float64)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(ts_col) & np.isfinite(dur_col) & (dur_col >= 0.0)
    if not usable.all():
        warnings[W_BAD_DUR] += int((~usable).sum())
    perm = np.flatnonzero(usable)
    perm = perm[np.lexsort((ts_col[perm], track_col[perm]))]
    return Trace(
        path=path, meta={}, tracks=tracks, strings=strings,
        track=track_col[perm].astype(np.int32, copy=False),
        ts=ts_col[perm], dur=dur_col[perm],
        name=col(s_name, np.int64)[perm].astype(np.int32),
        callable=col(s_call, np.int64)[perm].astype(np.int32),
        session=col(s_sess, np.int64)[perm].astype(np.int32),
        outcome=col(s_out, np.int64)[perm].astype(np.int32),
        task=col(s_task, np.int64)[perm], attempt=col(s_att, np.int64)[perm],
        nbytes=col(s_bytes, np.int64)[perm],
        flow_src_track=remap[col(f_src_track, np.int64)] if len(f_src_track) else np.zeros(0, np.int32),
        flow_src_ts=col(f_src_ts, np.float64),
        flow_dst_track=remap[col(f_dst_track, np.int64)] if len(f_dst_track) else np.zeros(0, np.int32),
        flow_dst_ts=col(f_dst_ts, np.float64),
        warnings=warnings,
    )
