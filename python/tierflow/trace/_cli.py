"""`tierflow trace summary|plot FILE`: the trace tools on the command line.

Exit codes: 0 done; 1 the file is not a readable trace, or the output cannot
be written (a one-line message on stderr, no traceback: the usual cause is a
wrong path or a file cut short, not a bug); 2 a usage error, or matplotlib
missing for `plot` (the message says to pip install it).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from ._load import TraceError, load
from ._plot import DEFAULT_WIDTH, MAX_ARROWS, MissingMatplotlib, plot
from ._report import DEFAULT_TOP, format_summary
from ._summary import DEFAULT_GAP_MS, summarize

PROG = "tierflow trace"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Read a trace written by tf.Worker(..., trace=\"run.json\").")
    sub = p.add_subparsers(dest="command", metavar="{summary,plot}")
    s = sub.add_parser("summary", help="time per callable, utilisation per worker, the critical path",
                       description="Print where the time went: per callable, per worker track, and the critical path.")
    s.add_argument("file", help="the trace (.json or .json.gz)")
    s.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                   help=f"callables shown, by total time (default {DEFAULT_TOP})")
    s.add_argument("--gap-ms", type=float, default=DEFAULT_GAP_MS, metavar="MS",
                   help=f"count idle gaps longer than this (default {DEFAULT_GAP_MS:g} ms)")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON instead of tables")
    q = sub.add_parser("plot", help="draw the timeline as a PNG (needs matplotlib)",
                       description="Draw one lane per worker track, slices coloured by callable.")
    q.add_argument("file", help="the trace (.json or .json.gz)")
    q.add_argument("-o", "--output", required=True, metavar="OUT.png", help="the PNG to write")
    q.add_argument("--flows", action="store_true",
                   help=f"draw dependency arrows (at most {MAX_ARROWS:,}, picked evenly over time)")
    q.add_argument("--width", type=int, default=DEFAULT_WIDTH, metavar="W",
                   help=f"picture width in pixels (default {DEFAULT_WIDTH})")
    return p


def _error(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        _parser().print_usage(sys.stderr)
        return 2
    for stream in (sys.stdout, sys.stderr):     # labels and task names may not fit the terminal's encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if args.command == "summary":
        if args.top < 0 or not args.gap_ms >= 0:
            return _error("--top and --gap-ms must not be negative", 2)
        try:
            trace = load(args.file)
        except TraceError as e:
            return _error(str(e), 1)
        numbers = summarize(trace, gap_ms=args.gap_ms)
        if args.json:
            sys.stdout.write(json.dumps(numbers, indent=1, default=str) + "\n")
        else:
            sys.stdout.write(format_summary(numbers, top=args.top))
        return 0
    # plot: check for matplotlib before spending time on a large file
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return _error(f"plot needs matplotlib ({e}): pip install matplotlib", 2)
    try:
        trace = load(args.file)
    except TraceError as e:
        return _error(str(e), 1)
    try:
        info = plot(trace, args.output, flows=args.flows, width=args.width)
    except MissingMatplotlib as e:
        return _error(str(e), 2)
    except OSError as e:
        return _error(f"cannot write {args.output}: {e.strerror or e}", 1)
    note = f", {info['arrows']:,} of {info['arrows_total']:,} dependency arrows" if args.flows else ""
    warned = sum(trace.warnings.values())
    if warned:
        note += f"; {warned} warnings reading the trace (see tierflow trace summary)"
    sys.stderr.write(f"wrote {args.output}: {info['lanes']} lanes, {info['slices']:,} slices{note}\n")
    return 0
