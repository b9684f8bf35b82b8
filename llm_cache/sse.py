"""Server-sent events, as the WHATWG spec frames them: blocks separated by a blank line, `field: value`
lines, `:` comments, multi-line `data`."""

import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import orjson

_BLOCK_SPLIT = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_SPLIT = re.compile(rb"\r\n|\n|\r")


class Event(NamedTuple):
    event: str | None
    data: str


def iter_events(body: bytes) -> Iterator[Event]:
    """Every event in a complete SSE body. Blocks with no data (comments, keep-alives) are skipped."""
    for block in _BLOCK_SPLIT.split(body):
        name: str | None = None
        data: list[str] = []
        for line in _LINE_SPLIT.split(block):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"event":
                name = value.decode("utf-8", "replace")
            elif field == b"data":
                data.append(value.decode("utf-8", "replace"))
        if data:
            yield Event(name, "\n".join(data))


def json_events(body: bytes, *, done_marker: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """(event name, parsed data) for each event; the done marker is yielded as its raw string.
    Raises ValueError on data that is not JSON."""
    for event in iter_events(body):
        if done_marker is not None and event.data == done_marker:
            yield event.event, event.data
        else:
            yield event.event, orjson.loads(event.data)


def encode(events: Iterable[tuple[str | None, Any]]) -> bytes:
    """Serialise (event name, data) pairs; data that is a str is sent as it is (e.g. `[DONE]`)."""
    out = bytearray()
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"
    return bytes(out)
