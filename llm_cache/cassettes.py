"""Cassettes: the cache's entries as a git-friendly, diffable file for CI (scripts/llm-cache export /
import). JSON Lines, sorted by key, one entry per line, every entry's fields in one fixed order and
its bodies in the order they were recorded, so the same entry always writes the same line and a diff
shows what changed. Streams are lists of events, the request is the readable request. Each body is
checked to be rebuilt byte for byte when it is written; one that would not be (an unusual layout) is
kept as text, so a replay from an imported cassette answers exactly what was recorded. Never a
credential: entries hold none, and any header that looks like one is dropped on the way out."""

import base64
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import orjson

from llm_cache import formats
from llm_cache.credentials import is_credential_header
from llm_cache.endpoints import Family, Wire
from llm_cache.keys import parse_json

CASSETTE = {"cassette": "llm-cache", "version": 1}  # the first line of every cassette


# Ways a JSON body may have been written, tried in this order; a body none of them writes back byte
# for byte is kept as text. "python" is json.dumps's default (", " and ": ", non-ASCII escaped).
LAYOUTS: dict[str, Callable[[Any], bytes]] = {
    "compact": orjson.dumps,
    "python": lambda value: json.dumps(value).encode(),
    "indent-2": lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2),
}


def _as_json(raw: bytes, layout: str | None = None) -> tuple[Any, str] | None:
    """(value, layout) when `raw` is a JSON object or array that a layout (this one, if given) writes
    back byte for byte."""
    try:
        value = orjson.loads(raw)  # what orjson reads it writes back unchanged: the cassette's own writer
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict | list):
        return None
    for name in [layout] if layout is not None else LAYOUTS:
        if LAYOUTS[name](value) == raw:
            return value, name
    return None


def _raw_text(raw: bytes) -> dict[str, str]:
    try:
        return {"text": raw.decode()}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def body_document(family: Family, is_stream: bool, body: bytes) -> dict[str, Any]:
    """A stored answer as a cassette holds it: JSON as JSON, a stream as its events (NDJSON as its
    lines), each rebuilt byte for byte by `body_bytes`; anything else as text."""
    document: dict[str, Any] | None = None
    if not is_stream:
        found = _as_json(body)
        document = None if found is None else {"json": found[0], "layout": found[1]}
    elif formats.stored_wire(family) is Wire.NDJSON:
        lines = body[:-1].split(b"\n") if body.endswith(b"\n") and b"\r" not in body else None
        if lines is not None:
            layout = _first_layout(lines)
            document = {"lines": [_data(line, layout) for line in lines], "layout": layout}
    else:
        events = _sse_events(body)
        if events is not None:
            layout = _first_layout(data for _, data in events if data is not None)
            document = {"events": [{"comment": name} if data is None else {"event": name, "data": _data(data, layout)}
                                   for name, data in events], "layout": layout}
    if document is None or body_bytes(document) != body:
        return _raw_text(body)
    return document


def _sse_events(body: bytes) -> list[tuple[str | None, bytes | None]] | None:
    """(event name, data) per block, or (comment, None) for a comment, when every block is one of
    `data: D`, `event: E` + `data: D` or `: comment`, LF-framed; None otherwise."""
    if body.find(b"\r") != -1 or not body.endswith(b"\n\n"):
        return None
    events: list[tuple[str | None, bytes | None]] = []
    try:
        for block in body[:-2].split(b"\n\n"):
            if block.startswith(b":") and block.find(b"\n") == -1:
                events.append((block[1:].decode(), None))
                continue
            name = None
            if block.startswith(b"event: "):
                head, _, block = block.partition(b"\n")
                name = head[7:].decode()
            if not block.startswith(b"data: ") or block.find(b"\n") != -1:
                return None
            block[6:].decode()  # text only: a cassette is UTF-8
            events.append((name, block[6:]))
    except UnicodeDecodeError:
        return None
    return events


def _first_layout(pieces: Iterable[bytes]) -> str | None:
    for piece in pieces:
        found = _as_json(piece)
        if found is not None:
            return found[1]
    return None


def _data(raw: bytes, layout: str | None) -> Any:
    """An event's data: its JSON when the entry's layout writes it back exactly, else its text."""
    found = _as_json(raw, layout) if layout is not None else None
    return raw.decode() if found is None else found[0]


def body_bytes(document: dict[str, Any]) -> bytes:
    """The stored answer a cassette's body document stands for."""
    layout = LAYOUTS.get(document.get("layout") or "compact", orjson.dumps)

    def data(value: Any) -> bytes:
        return value.encode() if isinstance(value, str) else layout(value)

    if "json" in document:
        return layout(document["json"])
    if "events" in document:
        out = bytearray()
        for event in document["events"]:
            if "comment" in event:
                out += b":" + event["comment"].encode() + b"\n\n"
                continue
            if event["event"] is not None:
                out += b"event: " + event["event"].encode() + b"\n"
            out += b"data: " + data(event["data"]) + b"\n\n"
        return bytes(out)
    if "lines" in document:
        return b"".join(data(line) + b"\n" for line in document["lines"])
    if "text" in document:
        return document["text"].encode()
    return base64.b64decode(document["base64"])


_REQUEST_HEAD = ("url", "headers", "profile", "user_agent")


def request_document(packed: bytes) -> dict[str, Any]:
    """A stored request as a cassette holds it: {url, headers, profile, user_agent, body, layout},
    rebuilt byte for byte by `request_bytes` (else its text). Credential headers are never written."""
    raw = zlib.decompress(packed)
    try:
        stored = parse_json(raw)
        head = {name: stored[name] for name in _REQUEST_HEAD}
        prefix = orjson.dumps(head)[:-1] + b',"body":'
        if raw.startswith(prefix) and raw.endswith(b"}"):
            headers = {name: value for name, value in head["headers"].items() if not is_credential_header(name)}
            document = {**head, "headers": headers}
            found = _as_json(raw[len(prefix):-1])
            if found is None:
                document["body_text"] = raw[len(prefix):-1].decode()
            else:
                document["body"], document["layout"] = found
            if headers != head["headers"] or request_bytes(document) == raw:
                return document
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return _raw_text(raw)


def request_bytes(document: dict[str, Any]) -> bytes:
    """The stored request (before compression) a cassette's request document stands for."""
    if "text" in document or "base64" in document:
        return body_bytes(document)
    head = orjson.dumps({name: document[name] for name in _REQUEST_HEAD})
    body = (document["body_text"].encode() if "body_text" in document
            else LAYOUTS[document["layout"]](document["body"]))
    return head[:-1] + b',"body":' + body + b"}"


def cassette_entry(row: dict[str, Any]) -> dict[str, Any]:
    """One entry as a cassette line holds it: fields in this fixed order; no hit counts (they change
    on every replay, and would make every diff noise)."""
    family = Family(row["family"])
    return {
        "key": row["key"],
        "family": row["family"],
        "host": row["host"],
        "model": row["model"],
        "status": row["status"],
        "is_stream": bool(row["is_stream"]),
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "sample": row["sample"],
        "tags": tags_of(row["tags"]),
        "deps": orjson.loads(row["deps"]) if row.get("deps") else [],  # a cassette without them: none
        "namespace": row.get("namespace") or "",
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "request": request_document(bytes(row["request"])),
        "headers": [[name, value] for name, value in orjson.loads(row["headers"]) if not is_credential_header(name)],
        "body": body_document(family, bool(row["is_stream"]), bytes(row["body"])),
    }


def entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The database row of a cassette entry (the assembled answer of a stream made again, as the
    writer makes it)."""
    family = Family(entry["family"])
    body = body_bytes(entry["body"])
    whole = formats.assembled(family, body) if entry["is_stream"] else None
    return {
        "key": entry["key"],
        "family": family.value,
        "status": entry["status"],
        "is_stream": entry["is_stream"],
        "created_at": entry["created_at"],
        "host": entry["host"],
        "model": entry["model"],
        "input_tokens": entry["input_tokens"],
        "output_tokens": entry["output_tokens"],
        "expires_at": entry["expires_at"],
        "sample": entry["sample"],
        "tags": "," + ",".join(entry["tags"]) + "," if entry["tags"] else None,
        "deps": orjson.dumps(entry["deps"]).decode() if entry.get("deps") else None,
        "namespace": entry.get("namespace") or None,
        "headers": orjson.dumps([tuple(h) for h in entry["headers"]]).decode(),
        "body": body,
        "assembled": orjson.dumps(whole) if whole is not None else None,
        "request": zlib.compress(request_bytes(entry["request"]), 1),
    }


def write_cassette(rows: Iterable[dict[str, Any]], out: IO[bytes],
                   progress: Callable[[int], None] = lambda done: None) -> int:
    out.write(orjson.dumps(CASSETTE) + b"\n")
    count = 0
    for count, row in enumerate(rows, 1):
        out.write(orjson.dumps(cassette_entry(row)) + b"\n")
        progress(count)
    return count


def read_cassette(lines: Iterable[bytes], name: str = "the cassette") -> Iterator[dict[str, Any]]:
    """The rows of a cassette's entries; raises ValueError naming the line that is not one."""
    number = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = orjson.loads(line)
            if number == 1:
                if not isinstance(document, dict) or document.get("cassette") != CASSETTE["cassette"]:
                    raise ValueError("it does not start with an llm-cache cassette line")
                if document.get("version") != CASSETTE["version"]:
                    raise ValueError(f"cassette version {document.get('version')!r} is not {CASSETTE['version']}")
                continue
            yield entry_row(document)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{name}, line {number}: not a cassette entry ({e})") from None
    if number == 0:
        raise ValueError(f"{name} is empty")

def tags_of(column: str | None) -> list[str]:
    return column.strip(",").split(",") if column and column.strip(",") else []
