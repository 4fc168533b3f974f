"""drain(progress=True): a progress bar on stderr for a long drain.

The bar is tqdm's (a well-kept library: terminal width, rates, ETA, the
redraw rules); tierflow only feeds it. It counts this drain's tasks of the
session — finished (completed or failed) out of submitted since the drain
began, so tasks submitted meanwhile from other threads grow the total — and
shows the failures. It appears only when stderr is a terminal, and only
once the drain has lasted half a second: short drains and logs stay clean.
The wait itself is the usual one, in slices of 0.1 s.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

SLICE_S = 0.1
SHOW_AFTER_S = 0.5


def wanted(progress: Any) -> bool:
    if not progress:
        return False
    stream = sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed
        return False


def drain(session: Any, timeout: Optional[float], label: str) -> bool:
    """session.drain(timeout) with a progress bar; True when drained."""
    try:
        from tqdm import tqdm
    except ImportError:  # declared as a dependency; a broken install still drains
        return session.drain(timeout)
    start = time.monotonic()
    deadline = None if timeout is None else start + float(timeout)
    base = session.stats()
    done0 = base["completed"] + base["failed"]
    failed0 = base["failed"]
    submitted0 = done0 + base["outstanding"]
    bar = None
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if session.drain(SLICE_S if left is None else min(SLICE_S, left)):
                if bar is not None:
                    _update(bar, session.stats(), done0, failed0)
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if bar is None and time.monotonic() - start >= SHOW_AFTER_S:
                bar = tqdm(total=max(1, submitted0 - done0), desc=label, unit="task", file=sys.stderr,
                           dynamic_ncols=True, leave=True, mininterval=0.2)
            if bar is not None:
                _update(bar, session.stats(), done0, failed0)
    finally:
        if bar is not None:
            bar.close()


def _update(bar: Any, s: dict, done0: int, failed0: int) -> None:
    done = s["completed"] + s["failed"] - done0
    total = done + s["outstanding"]
    if total != bar.total:
        bar.total = max(1, total)
    bar.n = done
    bar.set_postfix(failed=s["failed"] - failed0, refresh=False)
    bar.refresh()
