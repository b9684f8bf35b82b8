"""Server-sent events, as the WHATWG spec frames them: blocks separated by a blank line, `field: value`
lines, `:` comments, multi-line `data`. And the joining of text a stream sends in pieces, which the
assemblers of recorded SSE streams share.

Parsing is linear in the body. Almost every stream is framed `data: …\\n\\n` or `event: …\\ndata: …\\n\\n`
with LF (or only CRLF) line ends: those blocks are read with a few byte searches; any other block
(comments, multi-line data, `data:` without its space, …) and any body with lone CRs take the full
parse, so both give the same events."""

import re
from collections.abc import Callable, Iterable, Iterator
from operator import iadd
from typing import Any, NamedTuple

import orjson

_BLOCK_SPLIT = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_SPLIT = re.compile(rb"\r\n|\n|\r")


class Event(NamedTuple):
    event: str | None
    data: str


def iter_events(body: bytes) -> Iterator[Event]:
    """Every event in a complete SSE body. Blocks with no data (comments, keep-alives) are skipped."""
    for name, data in _events(body):
        yield Event(name, data.decode("utf-8", "replace"))


def json_events(body: bytes, *, done_marker: str | None = None) -> Iterator[tuple[str | None, Any]]:
    """(event name, parsed data) for each event; the done marker is yielded as its raw string.
    Raises ValueError on data that is not JSON."""
    done = None if done_marker is None else done_marker.encode()
    loads = orjson.loads
    for name, data in _events(body):
        if data == done:
            yield name, done_marker
            continue
        try:
            parsed = loads(data)  # bytes: orjson reads them without a str in between
        except ValueError:  # or not UTF-8: read as text, invalid bytes replaced, as `iter_events` has it
            parsed = loads(data.decode("utf-8", "replace"))
        yield name, parsed


def check(events: Iterable[Any], problem_of: Callable[[Any], str | None], *,
          not_json: str = "stream has an event that is not JSON") -> tuple[str | None, Any]:
    """The check every family's stream check shares: one pass over parsed events (or NDJSON lines)
    that keeps none of them, giving the first problem `problem_of` finds and the last event. It
    answers as parsing them all first did: a non-JSON event anywhere outranks a problem, or an
    exception `problem_of` raised on a malformed event (TypeError, AttributeError), before it."""
    problem: str | Exception | None = None
    last: Any = None
    try:
        for last in events:
            if problem is None:
                try:
                    problem = problem_of(last)
                except (TypeError, AttributeError) as e:  # a choice that is not an object, …
                    problem = e
    except ValueError:
        return not_json, last
    if isinstance(problem, Exception):
        raise problem
    return problem, last


def _events(body: bytes) -> Iterator[tuple[str | None, bytes]]:
    """(event name, data as UTF-8 bytes, possibly invalid) of each event: the parse behind both
    iterators. `in` on bytes costs several times `find` here, hence `find`."""
    if body.find(b"\r") != -1:
        crlf = body.count(b"\r\n")
        if crlf != body.count(b"\r") or crlf != body.count(b"\n"):  # lone CRs or mixed line ends
            for block in _BLOCK_SPLIT.split(body):
                yield from _block_event(block)
            return
        body = body.replace(b"\r\n", b"\n")  # only CRLF: the same blocks and lines as with LF
    for block in body.split(b"\n\n"):
        if block.startswith(b"data: "):
            if block.find(b"\n") == -1:
                yield None, block[6:]
                continue
        elif block.startswith(b"event: "):
            end = block.find(b"\n")
            if block.startswith(b"data: ", end + 1) and block.find(b"\n", end + 1) == -1:
                yield block[7:end].decode("utf-8", "replace"), block[end + 7:]
                continue
        yield from _block_event(block)


def _block_event(block: bytes) -> Iterator[tuple[str | None, bytes]]:
    """The full parse of one block: its event, if it carries data."""
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
        yield name, "\n".join(data).encode()  # valid UTF-8 now: decoding it again gives the same text


def encode(events: Iterable[tuple[str | None, Any]]) -> bytes:
    """Serialise (event name, data) pairs; data that is a str is sent as it is (e.g. `[DONE]`)."""
    out = bytearray()
    for name, data in events:
        if name:
            out += b"event: " + name.encode() + b"\n"
        out += b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"
    return bytes(out)


class Pieces:
    """Text a stream sends in pieces (text deltas, tool-call arguments), joined once at the end.

    `target[key] = target[key] + piece` per piece copies all the text before it: quadratic in the
    stream (90 s for a 50 MB chat stream of long deltas). Here text pieces are kept in a list while `target[key]` holds
    its place (JSON key order is kept), and `finish` joins them. Anything but text on either side is
    added there and then, so the result, or the TypeError, is the one adding up would have given."""

    def __init__(self) -> None:
        # (id(target), key) -> (target, key, its text pieces); `target` is kept so its id is not reused
        self._open: dict[tuple[int, Any], tuple[dict[Any, Any], Any, list[str]]] = {}

    def add(self, target: dict[Any, Any], key: Any, piece: Any, *, none_is_empty: bool = False,
            in_place: bool = False) -> None:
        """As `target[key] = target.get(key, "") + piece`, with `(target.get(key) or "")` when
        `none_is_empty` (a field that starts as null), or `target[key] += piece` when `in_place`
        (the same for text, not for a list, which `+=` extends with any iterable)."""
        slot = (id(target), key)
        opened = self._open.get(slot)
        if opened is not None:
            if type(piece) is str:
                opened[2].append(piece)
                return
            del self._open[slot]
            start: Any = "".join(opened[2])
        else:
            start = (target.get(key) or "") if none_is_empty else target.get(key, "")
        if type(start) is str and type(piece) is str:
            target[key] = start
            self._open[slot] = (target, key, [start, piece])
        else:
            target[key] = iadd(start, piece) if in_place else start + piece

    def drop(self, target: dict[Any, Any], key: Any) -> None:
        """Forget the pieces of `target[key]`: the stream is about to replace it whole."""
        self._open.pop((id(target), key), None)

    def take(self, target: dict[Any, Any], key: Any) -> Any:
        """Remove `target[key]` and return it, joined."""
        opened = self._open.pop((id(target), key), None)
        if opened is not None:
            del target[key]
            return "".join(opened[2])
        return target.pop(key)

    def finish(self) -> None:
        """Put every joined text in its place."""
        for target, key, pieces in self._open.values():
            target[key] = "".join(pieces)
        self._open.clear()
