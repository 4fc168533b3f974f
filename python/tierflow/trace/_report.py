"""The summary as text: aligned plain-text tables for a terminal or a log.

Kept apart from the numbers (_summary.py) so that what is computed and how it
is shown change independently, and so `format_summary` works on a summary
dict that was saved as JSON and read back.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

DEFAULT_TOP = 20


def _table(headers: Sequence[str], rows: List[Sequence[str]], right: Sequence[bool], indent: str = "  ") -> List[str]:
    """Columns padded to their widest cell; numbers right-aligned, text left."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100.0 * x:.1f}%"


def _ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_summary(summary: Dict[str, Any], top: int = DEFAULT_TOP) -> str:
    """The text report of a `summarize()` dict; `top`: callable rows shown."""
    s = summary
    out: List[str] = []
    who = f"worker {s['worker']}, " if s.get("worker") else ""
    clock = f" ({s['clock']})" if s.get("clock") else ""
    out.append(f"trace {s['file']}: {who}{s['slices']} slices on {len(s['tracks'])} tracks, "
               f"{s['dependencies']} dependencies, span {_ms(s['span_ms'])} ms{clock}")
    outcomes = ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()) or "none"
    par = "-" if s["parallelism"] is None else f"{s['parallelism']:.2f}"
    out.append(f"busy {s['busy_s']:.3f} s in all, average parallelism {par}; outcomes: {outcomes}")

    calls = s["callables"]
    shown = calls[:max(top, 0)]
    out.append("")
    out.append(f"callables by total time (top {len(shown)} of {len(calls)}):")
    out += _table(["callable", "count", "total ms", "mean ms", "p50 ms", "p99 ms"],
                  [[c["callable"], str(c["count"]), _ms(c["total_ms"]), _ms(c["mean_ms"]),
                    _ms(c["p50_ms"]), _ms(c["p99_ms"])] for c in shown],
                  [False, True, True, True, True, True])
    if len(calls) > len(shown):
        out.append(f"  ... {len(calls) - len(shown)} more callables")

    out.append("")
    gap = f"{s['gap_ms']:g}"
    out.append(f"worker tracks (utilisation = busy / span {_ms(s['span_ms'])} ms; "
               f"gaps = idle gaps longer than {gap} ms between consecutive slices):")
    out += _table(["track", "slices", "busy s", "util", "gaps", "idle s", "longest gap ms"],
                  [[t["track"], str(t["slices"]), f"{t['busy_s']:.3f}", _pct(t["utilisation"]),
                    str(t["gaps"]), f"{t['idle_s']:.3f}", _ms(t["longest_gap_ms"])] for t in s["tracks"]],
                  [False, True, True, True, True, True, True])

    cp = s["critical_path"]
    out.append("")
    out.append(f"critical path: {_ms(cp['length_ms'])} ms over {cp['n_links']} slices; "
               f"wall span {_ms(cp['span_ms'])} ms; ratio {_ratio(cp['ratio'])}")
    if cp["links"]:
        out += _table(["#", "task", "name", "callable", "track", "start ms", "dur ms", "outcome"],
                      [[str(i), str(link["task"]), link["name"], link["callable"], link["track"],
                        _ms(link["start_ms"]), _ms(link["dur_ms"]), link["outcome"]]
                       for i, link in enumerate(cp["links"], start=1)],
                      [True, True, False, False, False, True, True, False])
    if cp["n_links"] > len(cp["links"]):
        out.append(f"  ... {cp['n_links'] - len(cp['links'])} more")

    if s["warnings"]:
        out.append("")
        out.append(f"warnings ({sum(s['warnings'].values())}):")
        for msg, count in s["warnings"].items():
            out.append(f"  {count:>8}  {msg}")
    return "\n".join(out) + "\n"
