"""Reading a trace file's JSON a block of events at a time.

`json.loads` of a whole trace builds every event as a dict before the first
one can be used: about 2.7 GB of Python objects for a million slices and
their flows (a 400 MB file), held at once. Here the top-level object is
walked key by key and the "traceEvents" array is parsed in blocks of whole
lines (tierflow writes one event per line; a raw newline cannot occur inside
a JSON string, so a block that parses as "[" + lines + "]" is exactly a run
of whole events), each block's events handed on and freed before the next.
Text that does not fall into such blocks (a trace written on one line,
pretty-printed events) is read one event at a time with the decoder's
raw_decode, which is slower but the same JSON.

A file cut short inside or after the events (the writer was killed) yields
the events up to the cut and sets `truncated`; one that is not JSON, or not
a trace object, raises TraceError.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from typing import Any, Dict, Iterator

BLOCK_CHARS = 1 << 22          # about 15,000 events per block
_GZIP_MAGIC = b"\x1f\x8b"
_SPACE = re.compile(r"[ \t\r\n]*")
_SPACE_COMMAS = re.compile(r"[ \t\r\n,]*")


class TraceError(Exception):
    """The file cannot be read as a trace at all; the message says why."""


class _Cut(Exception):
    """The JSON stops being valid at `pos` (raised inside, turned into
    TraceError or `truncated` by Document.events)."""

    def __init__(self, pos: int, msg: str):
        super().__init__(msg)
        self.pos, self.msg = pos, msg


def read_text(path: str) -> str:
    """The file's text, gunzipped when it starts with gzip's magic bytes
    (whatever its name)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(f"cannot read {path}: {e.strerror or e}") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:   # BadGzipFile is an OSError
            raise TraceError(f"{path}: not a valid gzip file ({e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not JSON (not UTF-8 text)") from None


class Document:
    """One trace text: `events()` yields its events; once it is exhausted,
    `other` holds the other top-level keys (otherData, displayTimeUnit, ...),
    `has_events` says whether there was a "traceEvents" array, `truncated`
    whether the text was cut short and `trailing` whether text followed the
    document."""

    def __init__(self, path: str, text: str):
        self.path, self.text = path, text
        self.other: Dict[str, Any] = {}
        self.has_events = False
        self.truncated = False
        self.trailing = False
        self._decode = json.JSONDecoder().raw_decode

    def events(self) -> Iterator[Any]:
        text = self.text
        pos = _SPACE.match(text, 0).end()
        try:
            if text.startswith("[", pos):          # the JSON Array Format: events only
                self.has_events = True
                pos = yield from self._array(pos + 1)
            elif text.startswith("{", pos):
                pos = yield from self._object(pos + 1)
            else:
                self._not_a_trace()
        except _Cut as cut:
            if not self.has_events:
                line = text.count("\n", 0, cut.pos) + 1
                column = cut.pos - (text.rfind("\n", 0, cut.pos) + 1) + 1
                raise TraceError(f"{self.path}: not JSON: {cut.msg} at line {line} column {column}") from None
            self.truncated = True
            return
        self.trailing = _SPACE.match(text, pos).end() < len(text)

    def _not_a_trace(self) -> None:
        try:
            value = json.loads(self.text)
        except ValueError as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            raise TraceError(f"{self.path}: not JSON: {msg}{where}") from None
        raise TraceError(f"{self.path}: the JSON is a {type(value).__name__}, not a trace object")

    def _value(self, pos: int):
        try:
            return self._decode(self.text, pos)
        except json.JSONDecodeError as e:
            raise _Cut(e.pos, e.msg) from None

    def _object(self, pos: int):
        """The top-level object's members; streams "traceEvents", keeps the rest."""
        text = self.text
        pos = _SPACE.match(text, pos).end()
        if text.startswith("}", pos):
            return pos + 1
        while True:
            key, pos = self._value(pos)
            if not isinstance(key, str):
                raise _Cut(pos, "Expecting property name enclosed in double quotes")
            pos = _SPACE.match(text, pos).end()
            if not text.startswith(":", pos):
                raise _Cut(pos, "Expecting ':' delimiter")
            pos = _SPACE.match(text, pos + 1).end()
            if key == "traceEvents" and text.startswith("[", pos):
                self.has_events = True
                pos = yield from self._array(pos + 1)
            else:
                self.other[key], pos = self._value(pos)
            pos = _SPACE.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _SPACE.match(text, pos + 1).end()
            elif text.startswith("}", pos):
                return pos + 1
            else:
                raise _Cut(pos, "Expecting ',' delimiter" if pos < len(text) else "Unterminated object")

    def _array(self, pos: int):
        """The events array from just after its "["; returns the position
        after its "]". Separators are read leniently (stray commas pass)."""
        text, n = self.text, len(self.text)
        loads, decode = json.loads, self._decode
        slow_until = 0               # a block failed: one by one up to its end
        while True:
            pos = _SPACE_COMMAS.match(text, pos).end()
            if pos >= n:
                raise _Cut(pos, "the events array is not closed")
            if text[pos] == "]":
                return pos + 1
            if pos >= slow_until:
                nl = text.find("\n", pos + BLOCK_CHARS)
                if nl > 0:
                    block = text[pos:nl].rstrip().rstrip(",")
                    try:
                        items = loads("[" + block + "]")
                    except ValueError:       # the array ends inside, or not one event per line
                        slow_until = nl
                    else:
                        del block
                        yield from items
                        pos = nl
                        continue
            try:
                event, pos = decode(text, pos)
            except json.JSONDecodeError as e:
                raise _Cut(e.pos, e.msg) from None
            yield event
