"""w.explain(): the scheduler's snapshot of unfinished tasks, as text.

The snapshot comes from the engine (Scheduler::explain, built on the
scheduler thread); this module only words it: running tasks first (where,
for how long), then ready ones (queued behind how many of their session),
then pending ones (which unfinished producers they wait on)."""
from __future__ import annotations

from typing import List, Optional


def report(name: str, reports: Optional[List[dict]], *, session: Optional[str] = None, limit: int = 20) -> str:
    if reports is None:
        return f"{name}: the scheduler did not answer within 5 s"
    if session is not None:
        reports = [r for r in reports if r["session"] == session]
    where = f" of session {session!r}" if session is not None else ""
    if not reports:
        return f"{name}: no unfinished task{where}"
    lines = [f"{name}: {len(reports)} unfinished task(s){where}"]

    def label(r):
        s = "" if r["session"] == "default" else f" [session {r['session']}]"
        return f"task {r['id']} ({r['name']}){s}"

    groups = [("running", [r for r in reports if r["state"] == "running"]),
              ("ready, waiting for a worker", [r for r in reports if r["state"] == "ready"]),
              ("pending, waiting for producers", [r for r in reports if r["state"] == "pending"])]
    for title, rs in groups:
        if not rs:
            continue
        lines.append(f"  {title} ({len(rs)}):")
        for r in rs[:limit]:
            if r["state"] == "running":
                tries = f", attempt {r['attempts']}" if r["attempts"] > 1 else ""
                lines.append(f"    {label(r)} on {', '.join(r['workers'])} for {r['running_s']:.1f} s{tries}")
            elif r["state"] == "ready":
                lines.append(f"    {label(r)}: {r['queued_ahead']} task(s) of its session queued before it")
            else:
                waits = ", ".join(f"task {i} ({n}, {st})" for i, n, st in r["waits_on"]) or \
                    "nothing (its producers just finished)"
                lines.append(f"    {label(r)} waits on {waits}")
        if len(rs) > limit:
            lines.append(f"    ... and {len(rs) - limit} more")
    return "\n".join(lines)
