"""Files that readers must never see half-written (a daemon's ready file, a
trace, a trace part): written under a temporary name in the same folder,
then renamed onto the final name, which is atomic on one file system."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str, prefix: str = ".tierflow-") -> Iterator[str]:
    """Yields a temporary path beside `path` to write; when the block ends
    normally it becomes `path`, when it raises it is removed."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=d)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
