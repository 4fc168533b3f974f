"""A timeline picture of a trace (PNG), for a report or an issue where
Perfetto cannot be opened.

One lane per worker track, in the trace's order (process sort index, then
thread sort index), labelled "process › thread"; each slice a bar coloured
by its callable (the callables with the most total time get their own
colour, the rest share a grey); slices that did not complete are
hatched; optionally the dependency flows as arrows, at most MAX_ARROWS of
them (picked evenly over time, and the figure says so), since thousands of
arrows are only ink.

matplotlib is an optional dependency: it is imported here, on first use,
and its absence raises MissingMatplotlib (an ImportError that says what to
install). The figure is drawn through matplotlib's object API on an Agg
canvas, never through pyplot, so plotting leaves a caller's own matplotlib
state (backend, open figures) alone and needs no display.

Runs of bars narrower than a pixel, with gaps below a pixel between them,
are drawn as one bar in the colour of the run's longest slice (within a
pixel the colours could not be told apart anyway): a million-slice trace
becomes some tens of thousands of rectangles instead of a million. Wider
bars are always drawn one by one, and a failed slice never shares a bar
with a completed one.
"""
from __future__ import annotations

import os
from typing import Any, Dict

import numpy as np

from ._load import Trace

MAX_ARROWS = 2000
MAX_COLOURS = 18
DEFAULT_WIDTH = 1600
DPI = 100
LANE_IN = 0.3          # inches of figure height per lane
COMPLETED = "completed"


class MissingMatplotlib(ImportError):
    """`tierflow trace plot` needs matplotlib, which is not installed."""


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as e:
        raise MissingMatplotlib(f"tierflow trace plot needs matplotlib ({e}): pip install matplotlib") from None
    return FigureCanvasAgg, Figure, PolyCollection, Patch


def _palette(n: int):
    """n distinct colours: tab20 without its greys (grey means 'other')."""
    import matplotlib
    cmap = matplotlib.colormaps["tab20"] if hasattr(matplotlib, "colormaps") else matplotlib.cm.get_cmap("tab20")
    colours = [cmap(i) for i in range(20) if i not in (14, 15)]
    return [colours[i % len(colours)] for i in range(n)]


def plot(trace: Trace, out_png: str, flows: bool = False, width: int = DEFAULT_WIDTH,
         max_arrows: int = MAX_ARROWS) -> Dict[str, Any]:
    """Draw `trace` as a timeline into the PNG file `out_png`, `width` pixels
    wide. Returns what was drawn: {"lanes", "slices", "rectangles",
    "arrows", "arrows_total"} (rectangles after merging sub-pixel bars)."""
    FigureCanvasAgg, Figure, PolyCollection, Patch = _matplotlib()
    width = max(int(width), 200)
    lanes = max(len(trace.tracks), 1)
    height_in = 1.4 + LANE_IN * lanes
    fig = Figure(figsize=(width / DPI, height_in), dpi=DPI, constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    t0 = trace.start
    span_ms = max((trace.end - t0) / 1e3, 1e-9)
    info = {"lanes": len(trace.tracks), "slices": len(trace), "rectangles": 0,
            "arrows": 0, "arrows_total": int(trace.flow_src_ts.shape[0])}

    # colour class per slice: callable rank by total time, capped at MAX_COLOURS ("other")
    legend = []
    if len(trace):
        present = np.unique(trace.callable)
        totals = np.bincount(trace.callable, weights=trace.dur, minlength=len(trace.strings))[present]
        ranked = present[np.lexsort((present, -totals))].tolist()
        own = ranked[:MAX_COLOURS] if len(ranked) <= MAX_COLOURS else ranked[:MAX_COLOURS - 1]
        rank = np.full(len(trace.strings), len(own), dtype=np.int64)
        rank[np.asarray(own, dtype=np.int64)] = np.arange(len(own))
        colours = _palette(len(own)) + [(0.75, 0.75, 0.75, 1.0)]
        legend = [Patch(facecolor=colours[r], label=trace.strings[i]) for r, i in enumerate(own)]
        if len(ranked) > len(own):
            legend.append(Patch(facecolor=colours[-1], label=f"other ({len(ranked) - len(own)} callables)"))
        failed = np.ones(len(trace.strings), dtype=bool)
        if COMPLETED in trace.strings:
            failed[trace.strings.index(COMPLETED)] = False
        bad = failed[trace.outcome]
        cls = rank[trace.callable] * 2 + bad

        x0 = (trace.ts - t0) / 1e3
        x1 = x0 + trace.dur / 1e3
        px = span_ms / (width * 0.75)                     # ms per pixel of the axes, roughly
        lane = trace.track
        wide = (x1 - x0) >= px
        brk = np.ones(len(trace), dtype=bool)        # where a new rectangle begins
        brk[1:] = ((lane[1:] != lane[:-1]) | (bad[1:] != bad[:-1]) | (x0[1:] - x1[:-1] > px)
                   | wide[1:] | wide[:-1])
        first = np.flatnonzero(brk)
        gx0 = x0[first]
        gx1 = np.maximum(np.maximum.reduceat(x1, first), gx0 + px * 0.5)   # at least half a pixel
        gy = lane[first].astype(np.float64)
        group = np.cumsum(brk) - 1
        by_length = np.lexsort((-trace.dur, group))                        # each run's longest slice first
        heads = by_length[np.r_[0, np.flatnonzero(np.diff(group[by_length])) + 1]]
        gcls = cls[heads]
        verts = np.empty((first.shape[0], 4, 2))
        verts[:, 0, 0] = verts[:, 1, 0] = gx0
        verts[:, 2, 0] = verts[:, 3, 0] = gx1
        verts[:, 0, 1] = verts[:, 3, 1] = gy - 0.4
        verts[:, 1, 1] = verts[:, 2, 1] = gy + 0.4
        face = np.asarray(colours)[gcls // 2]
        # a white hairline between bars wide enough to keep one, so touching slices stay apart
        edge_w = np.where(gx1 - gx0 >= 4 * px, 0.4, 0.0)
        good = gcls % 2 == 0
        ax.add_collection(PolyCollection(verts[good], facecolors=face[good], edgecolors="white",
                                         linewidths=edge_w[good]))
        if not good.all():    # runs that did not complete: hatched, in a collection of their own
            ax.add_collection(PolyCollection(verts[~good], facecolors=face[~good], edgecolors=(0.1, 0.1, 0.1),
                                             linewidths=0.6, hatch="xxx"))
            legend.append(Patch(facecolor="white", edgecolor=(0.1, 0.1, 0.1), hatch="xxx", linewidth=0.6,
                                label="not completed"))
        info["rectangles"] = int(first.shape[0])
    else:
        ax.text(0.5, 0.5, "no slices", transform=ax.transAxes, ha="center", va="center")

    if flows and info["arrows_total"]:
        n = info["arrows_total"]
        pick = np.argsort(trace.flow_src_ts, kind="stable")
        if n > max_arrows:
            pick = pick[np.linspace(0, n - 1, max(max_arrows, 0)).astype(np.int64)]
        sx = (trace.flow_src_ts[pick] - t0) / 1e3
        dx = (trace.flow_dst_ts[pick] - t0) / 1e3 - sx
        sy = trace.flow_src_track[pick].astype(np.float64)
        dy = trace.flow_dst_track[pick].astype(np.float64) - sy
        if pick.shape[0]:
            ax.quiver(sx, sy, dx, dy, angles="xy", scale_units="xy", scale=1.0, width=0.0012,
                      headwidth=5, headlength=6, headaxislength=5, color=(0.1, 0.1, 0.1, 0.55), zorder=3)
        info["arrows"] = int(pick.shape[0])
        if info["arrows"] < n:
            ax.text(0.995, 0.01, f"dependency arrows: {info['arrows']:,} of {n:,} drawn (evenly over time)",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color=(0.6, 0.0, 0.0),
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.8), zorder=4)

    # process boundaries as lines between lanes
    for i in range(1, len(trace.tracks)):
        if trace.tracks[i].pid != trace.tracks[i - 1].pid:
            ax.axhline(i - 0.5, color=(0.4, 0.4, 0.4), linewidth=0.6)
    ax.set_ylim(lanes - 0.5, -0.5)                      # first lane at the top
    ax.set_yticks(range(len(trace.tracks)))
    ax.set_yticklabels([t.label for t in trace.tracks], fontsize=8)
    ax.set_xlim(0.0, span_ms * 1.01)
    ax.set_xlabel("time (ms from the trace start)")
    who = trace.meta.get("worker")
    ax.set_title(f"{os.path.basename(trace.path)}" + (f" \u2014 {who}" if who else "")
                 + f": {len(trace):,} slices, span {span_ms if len(trace) else 0.0:.3f} ms",
                 fontsize=10, loc="left")
    ax.grid(axis="x", color=(0.9, 0.9, 0.9), linewidth=0.6)
    ax.set_axisbelow(True)
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                  frameon=False, title="callable", title_fontsize=8)
    fig.savefig(out_png, format="png", dpi=DPI)
    return info
