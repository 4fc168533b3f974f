"""Remote level 3: `tierflow daemon` and the client a level-4 Worker runs
for each `add_remote` (see docs/remote.md).

Importing this package does not import gRPC; only the daemon process and a
level-4 Worker's remote proxy children do, after every fork they make."""
from .launch import remotes_from_ready_files

__all__ = ["remotes_from_ready_files"]
