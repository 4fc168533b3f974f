"""`python -m tierflow <command>` (also the `tierflow` console script).

    tierflow daemon --listen HOST:PORT --chips N --sub-workers M ...   serve a level-3 Worker (docs/remote.md)
    tierflow trace summary|plot FILE ...   read a trace written by Worker(trace="run.json")
"""
from __future__ import annotations

import sys
from typing import List, Optional

USAGE = """usage: tierflow <command> [options]

commands:
  daemon     serve one level-3 Worker to level-4 Workers on other hosts (tierflow daemon --help)
  trace      summarise or plot a trace file (tierflow trace summary FILE, tierflow trace plot FILE -o OUT.png)
"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "daemon":
        from .remote.daemon import main as daemon_main
        return daemon_main(rest)
    if command == "trace":
        from .trace._cli import main as trace_main
        return trace_main(rest)
    sys.stderr.write(f"tierflow: unknown command {command!r}\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
