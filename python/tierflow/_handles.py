"""Typed handles returned by Worker.register_*: they name a callable that the
children know by index, and remember which Worker they belong to."""
from __future__ import annotations

from typing import Any, Callable


class _Handle:
    __slots__ = ("_owner", "index", "fn")
    kind = "handle"

    def __init__(self, owner: Any, index: int, fn: Callable):
        self._owner = owner
        self.index = index
        self.fn = fn

    def __reduce__(self):
        # Sent to another host (inside a pickled orch function), a handle
        # travels as the content key of its callable; the daemon resolves it
        # to its own handle for the same callable (see remote/catalog.py).
        from .remote.catalog import handle_key, resolve_handle
        kind, key = handle_key(self)
        return (resolve_handle, (kind, key))

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        return f"<tf.{type(self).__name__} #{self.index} {name}>"


class SubHandle(_Handle):
    """A callable fn(args) that runs on a sub-worker process."""
    __slots__ = ()
    kind = "SubHandle"


class KernelHandle(_Handle):
    """A callable fn(args, chip) that runs on a chip process."""
    __slots__ = ()
    kind = "KernelHandle"


class OrchHandle(_Handle):
    """A callable fn(orch, args) that runs on a next-level Worker (level >= 4)."""
    __slots__ = ()
    kind = "OrchHandle"
