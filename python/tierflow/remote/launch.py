"""Turning daemons started by a launcher into add_remote() calls.

Each daemon writes its --ready-file once it serves (JSON: its address,
versions, chips, ...). A launcher that starts one daemon per node with its
ready file in a shared directory (Slurm `srun`, a Kubernetes Indexed Job with
a shared volume, Ray actors) leaves a directory the driver can read."""
from __future__ import annotations

import glob
import json
import os
import time
from typing import Any, Dict, List, Optional


def remotes_from_ready_files(directory: str, *, expect: Optional[int] = None, timeout: float = 60.0,
                             pattern: str = "*.json") -> List[Dict[str, Any]]:
    """The ready files in `directory`, sorted by file name, as dicts with at
    least "address" (host:port), "chips" and "sub_workers" (configured
    counts) and "host". With `expect=N`, waits up to `timeout` seconds until
    N daemons are ready, then raises TimeoutError naming how many were.
    Use as ``for r in remotes_from_ready_files(d, expect=4):
    w4.add_remote(r["address"], l3, token=token)``."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for path in sorted(glob.glob(os.path.join(directory, pattern))):
            try:
                with open(path) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                continue  # being replaced, or not a ready file
            if not isinstance(info, dict) or info.get("state") != "serving" or "address" not in info:
                continue
            found.append({"address": info["address"], "chips": info.get("chips", {}).get("configured", 0),
                          "sub_workers": info.get("sub_workers", {}).get("configured", 0),
                          "host": info.get("host", ""), "file": path, "ready": info})
        if expect is None or len(found) >= expect:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{len(found)} of {expect} tierflow daemons wrote a ready file into {directory} "
                               f"within {timeout:g} s")
        time.sleep(0.1)
