"""The dependency graph of a trace's slices and its critical path.

Each dependency flow is a pair of points: the start inside the producer's
slice (just before its end) and the finish inside the consumer's slice (just
after its start). Mapping each point to the slice that contains it on its
track turns the flows into edges between slices; the slices and edges form
a DAG (a consumer cannot start before its producer ended).

The critical path is the chain of dependent slices with the greatest summed
duration: however many workers there were, the run could not have been
shorter than it. Comparing it with the wall span says whether the run was
bound by its dependencies (ratio near 1) or by too few workers / overheads
between tasks (ratio well below 1).

Both steps are about linear in slices plus flows (plus numpy sorts): the
point lookup is a binary search per point within its track (vectorised per
track), and the longest path is one sweep over the edges taken in their
producers' start order, which is a topological order because a consumer
starts after its producer ended. Should a flow run backwards in time
(clocks of different hosts, a writer's bug), start order is no longer
topological: the sweep then follows Kahn's order instead, and a cycle,
which only a malformed file can hold, is reported and left out.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ._load import Trace

W_FLOW_OUTSIDE = "flow point lies in no slice on its track (flow ignored)"
W_FLOW_SELF = "flow from a slice to itself (ignored)"
W_BACKWARDS = "dependency whose consumer starts before its producer ends (clocks apart?)"
W_CYCLE = "slice on a dependency cycle (left out of the critical path)"

EPS_US = 1e-3
"""Slack (µs, i.e. 1 ns) when testing whether a flow point lies inside a
slice, for rounding in the writer's ts + dur and in the JSON round trip."""


@dataclass
class CriticalPath:
    """The longest chain: `slices` are slice indices (into the Trace's
    columns) in dependency order; `length_us` their summed duration."""
    slices: np.ndarray
    length_us: float
    edges: int            # dependency edges the graph had (after resolving flows)


def _track_bounds(trace: Trace) -> np.ndarray:
    """offsets[k]:offsets[k+1] are track k's slices (slices are sorted by track)."""
    return np.searchsorted(trace.track, np.arange(len(trace.tracks) + 1), side="left")


def _locate(trace: Trace, bounds: np.ndarray, track: np.ndarray, ts: np.ndarray,
            producer: bool) -> np.ndarray:
    """The slice containing each point (track[i], ts[i]), or -1.

    Slices of one track do not overlap but may touch (one ends where the
    next starts), so a point exactly on a boundary is in two. A producer's
    point belongs near its slice's end, so there it goes to the slice that
    ends at the point; a consumer's point belongs near its start, so it
    goes to the slice that starts there. A zero-length slice at the point
    takes it either way (its start is its end)."""
    out = np.full(ts.shape[0], -1, dtype=np.int64)
    if ts.shape[0] == 0 or len(trace) == 0:
        return out
    ends = trace.ts + trace.dur
    order = np.argsort(track, kind="stable")
    cuts = np.searchsorted(track[order], np.arange(len(trace.tracks) + 1), side="left")
    for k in np.flatnonzero(np.diff(cuts)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        if hi == lo:
            continue
        pts = order[cuts[k]:cuts[k + 1]]
        starts_k, ends_k = trace.ts[lo:hi], ends[lo:hi]
        t = ts[pts]
        j = np.searchsorted(starts_k, t + EPS_US, side="right") - 1    # the last slice starting by t
        jc = np.maximum(j, 0)
        inside = (j >= 0) & (t <= ends_k[jc] + EPS_US)
        i = np.where(inside, j, -1)
        if producer:
            starts_here = inside & (starts_k[jc] >= t - EPS_US) & (ends_k[jc] > t + EPS_US)
            prev = np.maximum(j - 1, 0)
            prev_ends_here = (j >= 1) & (np.abs(ends_k[prev] - t) <= EPS_US)
            i = np.where(starts_here & prev_ends_here, j - 1, i)
        out[pts] = np.where(i >= 0, i + lo, -1)
    return out


def dependency_edges(trace: Trace, warnings: Optional[Counter] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(producer slice, consumer slice) index arrays, one entry per usable
    flow; flows that cannot be placed are counted in `warnings`."""
    if warnings is None:
        warnings = Counter()
    bounds = _track_bounds(trace)
    src = _locate(trace, bounds, trace.flow_src_track, trace.flow_src_ts, producer=True)
    dst = _locate(trace, bounds, trace.flow_dst_track, trace.flow_dst_ts, producer=False)
    placed = (src >= 0) & (dst >= 0)
    outside = int((~placed).sum())
    if outside:
        warnings[W_FLOW_OUTSIDE] += outside
    src, dst = src[placed], dst[placed]
    self_loop = src == dst
    if self_loop.any():
        warnings[W_FLOW_SELF] += int(self_loop.sum())
        src, dst = src[~self_loop], dst[~self_loop]
    return src, dst


def critical_path(trace: Trace, warnings: Optional[Counter] = None) -> CriticalPath:
    """The longest (by summed slice duration) chain of dependent slices.

    best(v) = dur(v) + max(best(u) for each producer u of v), computed in a
    topological order (start time, else Kahn's); a slice without edges is a
    chain of one. Ties are broken by whichever was found first."""
    n = len(trace)
    if n == 0:
        return CriticalPath(np.zeros(0, np.int64), 0.0, 0)
    src, dst = dependency_edges(trace, warnings)
    dur = trace.dur
    best = dur.copy()
    parent = None
    if src.shape[0]:
        rank = np.empty(n, dtype=np.int64)      # position in start-time order
        rank[np.argsort(trace.ts, kind="stable")] = np.arange(n)
        backwards = trace.ts[dst] < trace.ts[src] + dur[src] - EPS_US
        if backwards.any():
            warnings[W_BACKWARDS] += int(backwards.sum())
        if bool(np.all(rank[src] < rank[dst])):
            acc, parent = _sweep_in_time(src, dst, rank, dur.tolist(), n)
            best += np.asarray(acc)
        else:
            acc, parent, stuck = _kahn(src, dst, dur.tolist(), n)
            best += np.asarray(acc)
            if stuck.shape[0]:
                warnings[W_CYCLE] += int(stuck.shape[0])
                best[stuck] = -np.inf
    end = int(np.argmax(best))
    if best[end] == -np.inf:        # every slice is on a cycle
        return CriticalPath(np.zeros(0, np.int64), 0.0, int(src.shape[0]))
    chain = [end]
    if parent is not None:
        while parent[chain[-1]] >= 0:
            chain.append(parent[chain[-1]])
    chain.reverse()
    path = np.asarray(chain, dtype=np.int64)
    return CriticalPath(path, float(dur[path].sum()), int(src.shape[0]))


def _sweep_in_time(src: np.ndarray, dst: np.ndarray, rank: np.ndarray, dur: list, n: int):
    """The longest-path sweep when every edge goes forward in start time (the
    normal case: a consumer starts after its producer ended). Then start
    order is a topological order, and taking the edges by their producer's
    start relaxes all edges into a slice before any edge out of it: one
    pass over the edges, nothing per slice."""
    order = np.argsort(rank[src], kind="stable")
    acc = [0.0] * n              # the longest chain ending just before each slice
    parent = [-1] * n
    for u, v in zip(src[order].tolist(), dst[order].tolist()):
        b = acc[u] + dur[u]
        if b > acc[v]:
            acc[v] = b
            parent[v] = u
    return acc, parent


def _kahn(src: np.ndarray, dst: np.ndarray, dur: list, n: int):
    """The same sweep in Kahn's topological order, for a graph with an edge
    that goes back in time (clocks of different hosts, a hand-edited file).
    Returns (acc, parent, the slices on or behind a cycle: never reached)."""
    order = np.argsort(src, kind="stable")
    succ = dst[order].tolist()
    out_deg = np.bincount(src, minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(out_deg, out=offsets[1:])
    indeg_arr = np.bincount(dst, minlength=n)
    involved = np.flatnonzero((out_deg > 0) | (indeg_arr > 0))
    queue = involved[indeg_arr[involved] == 0].tolist()
    indeg = indeg_arr.tolist()
    off = offsets.tolist()
    acc = [0.0] * n
    parent = [-1] * n
    for u in queue:             # the list grows while it is walked: Kahn's queue
        bu = acc[u] + dur[u]
        for j in range(off[u], off[u + 1]):
            v = succ[j]
            if bu > acc[v]:
                acc[v] = bu
                parent[v] = u
            d = indeg[v] - 1
            indeg[v] = d
            if d == 0:
                queue.append(v)
    stuck = np.zeros(0, dtype=np.int64)
    if len(queue) < involved.shape[0]:
        done = np.zeros(n, dtype=bool)
        done[np.asarray(queue, dtype=np.int64)] = True
        stuck = involved[~done[involved]]
    return acc, parent, stuck
