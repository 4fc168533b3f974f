"""Tools that read the Chrome Trace Event files a Worker writes with
`tf.Worker(..., trace="run.json")` (or "run.json.gz").

    trace = tierflow.trace.load("run.json.gz")
    numbers = tierflow.trace.summarize(trace)       # dicts and lists: callables, tracks, critical path
    print(tierflow.trace.format_summary(numbers))
    tierflow.trace.plot(trace, "run.png", flows=True)   # needs matplotlib

and on the command line `tierflow trace summary FILE [--top N]` and
`tierflow trace plot FILE -o OUT.png [--flows] [--width W]`. The files are
also ordinary Chrome traces: Perfetto (ui.perfetto.dev) opens them.
"""
from ._critical import CriticalPath, critical_path, dependency_edges
from ._load import Trace, TraceError, Track, load
from ._plot import MissingMatplotlib, plot
from ._report import format_summary
from ._summary import summarize

__all__ = [
    "CriticalPath", "MissingMatplotlib", "Trace", "TraceError", "Track", "critical_path",
    "dependency_edges", "format_summary", "load", "plot", "summarize",
]
