"""The numbers of a trace: where the time went, how busy each worker was, and
what bound the run.

`summarize(trace)` returns plain dicts and lists (JSON-serialisable, so
`tierflow trace summary --json` can print them and tests can compare them)
with three parts:

- per callable: count, total, mean, p50 and p99 of slice durations, sorted
  by total time, because the callables that take the most time in sum are
  the ones worth making faster;
- per worker track: slices, busy time, utilisation (busy over the whole
  trace's span, first slice start to last slice end, so tracks compare on
  one scale) and the idle gaps between consecutive slices longer than a
  threshold (short gaps are scheduling overhead, long ones are starvation);
- the critical path (see _critical.py) against the wall span.

Percentiles are nearest-rank (the smallest duration with at least q% of the
slices at or below it), so every reported value is a duration that occurred.
Busy time is the sum of slice durations; slices of one track are not meant
to overlap, and an overlap is counted as a warning.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List

import numpy as np

from ._critical import critical_path
from ._load import Trace

DEFAULT_GAP_MS = 1.0
DEFAULT_LINKS = 30
W_OVERLAP = "slices overlapping on one track (busy time counts both)"
W_DROPPED = "events the recorder dropped (otherData.dropped): the trace is incomplete"


def summarize(trace: Trace, gap_ms: float = DEFAULT_GAP_MS, links: int = DEFAULT_LINKS) -> Dict[str, Any]:
    """The summary numbers of `trace` (times in ms unless a key says _s or
    _us). `gap_ms`: the idle gaps counted per track are those longer than
    this; `links`: how many critical path links are described in full
    (the task ids of all of them are always listed)."""
    warnings: Counter = Counter(trace.warnings)
    n = len(trace)
    start, end = trace.start, trace.end
    span_us = end - start
    dropped = trace.meta.get("dropped", 0)
    dropped = dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0
    if dropped > 0:
        warnings[W_DROPPED] += dropped
    busy_total_us = float(trace.dur.sum())
    outcomes = Counter()
    if n:
        ids, counts = np.unique(trace.outcome, return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist()):
            outcomes[trace.strings[i]] = c
    tracks = _tracks(trace, span_us, gap_ms, warnings)
    path = critical_path(trace, warnings)
    return {
        "file": trace.path,
        "worker": trace.meta.get("worker"),
        "clock": trace.meta.get("clock"),
        "tierflow": trace.meta.get("tierflow"),
        "dropped": dropped,
        "slices": n,
        "dependencies": path.edges,
        "start_us": start,
        "end_us": end,
        "span_ms": span_us / 1e3,
        "busy_s": busy_total_us / 1e6,
        "parallelism": busy_total_us / span_us if span_us > 0 else None,
        "outcomes": dict(outcomes.most_common()),
        "callables": _callables(trace),
        "gap_ms": gap_ms,
        "tracks": tracks,
        "critical_path": _path(trace, path, span_us, links),
        "warnings": dict(warnings.most_common()),
    }


def _nearest_rank(sorted_durs: np.ndarray, lo: np.ndarray, count: np.ndarray, q: float) -> np.ndarray:
    """Per group [lo, lo+count) of an ascending array: its q-quantile, nearest rank."""
    rank = np.ceil(count * (q / 100.0)).astype(np.int64)      # 1-based
    return sorted_durs[lo + np.clip(rank, 1, count) - 1]


def _callables(trace: Trace) -> List[Dict[str, Any]]:
    if len(trace) == 0:
        return []
    order = np.lexsort((trace.dur, trace.callable))
    calls, durs = trace.callable[order], trace.dur[order]
    lo = np.flatnonzero(np.r_[True, calls[1:] != calls[:-1]])
    count = np.diff(np.r_[lo, calls.shape[0]])
    total = np.add.reduceat(durs, lo)
    p50 = _nearest_rank(durs, lo, count, 50)
    p99 = _nearest_rank(durs, lo, count, 99)
    rows = [{
        "callable": trace.strings[int(calls[lo[g]])],
        "count": int(count[g]),
        "total_ms": float(total[g]) / 1e3,
        "mean_ms": float(total[g]) / count[g] / 1e3,
        "p50_ms": float(p50[g]) / 1e3,
        "p99_ms": float(p99[g]) / 1e3,
    } for g in range(lo.shape[0])]
    rows.sort(key=lambda r: (-r["total_ms"], r["callable"]))
    return rows


def _tracks(trace: Trace, span_us: float, gap_ms: float, warnings: Counter) -> List[Dict[str, Any]]:
    k = len(trace.tracks)
    track = trace.track
    count = np.bincount(track, minlength=k)
    busy = np.bincount(track, weights=trace.dur, minlength=k)
    gaps = np.zeros(k, dtype=np.int64)
    idle = np.zeros(k)
    longest = np.zeros(k)
    if len(trace) > 1:
        same = track[1:] == track[:-1]                 # consecutive slices of one track
        gap = trace.ts[1:] - (trace.ts[:-1] + trace.dur[:-1])
        overlap = same & (gap < -1e-3)
        if overlap.any():
            warnings[W_OVERLAP] += int(overlap.sum())
        on = track[1:][same]
        g = np.maximum(gap[same], 0.0)
        np.maximum.at(longest, on, g)
        big = g > gap_ms * 1e3
        gaps = np.bincount(on[big], minlength=k)
        idle = np.bincount(on[big], weights=g[big], minlength=k)
    rows = []
    for i, t in enumerate(trace.tracks):
        rows.append({
            "track": t.label,
            "process": t.process,
            "thread": t.thread,
            "pid": t.pid,
            "tid": t.tid,
            "slices": int(count[i]),
            "busy_s": float(busy[i]) / 1e6,
            "utilisation": float(busy[i]) / span_us if span_us > 0 else None,
            "gaps": int(gaps[i]),
            "idle_s": float(idle[i]) / 1e6,
            "longest_gap_ms": float(longest[i]) / 1e3,
        })
    return rows


def _path(trace: Trace, path, span_us: float, links: int) -> Dict[str, Any]:
    idx = path.slices
    t0 = trace.start
    described = []
    for i in idx[:max(links, 0)].tolist():
        described.append({
            "task": int(trace.task[i]),
            "name": trace.strings[trace.name[i]],
            "callable": trace.strings[trace.callable[i]],
            "track": trace.tracks[trace.track[i]].label,
            "attempt": int(trace.attempt[i]),
            "outcome": trace.strings[trace.outcome[i]],
            "start_ms": (float(trace.ts[i]) - t0) / 1e3,
            "dur_ms": float(trace.dur[i]) / 1e3,
        })
    length_ms = path.length_us / 1e3
    return {
        "length_ms": length_ms,
        "span_ms": span_us / 1e3,
        "ratio": path.length_us / span_us if span_us > 0 else None,
        "n_links": int(idx.shape[0]),
        "tasks": trace.task[idx].tolist(),
        "links": described,
    }
