"""Reading and writing mitmproxy's messages, fast, and marking flows for mitmweb: the only module of
the package besides the hook steps (serving, recording) that knows mitmproxy's types."""

import copy
import time
from email.utils import formatdate

from mitmproxy import http
from mitmproxy.net.http import status_codes

from llm_cache.decode import TooLarge, decode

MARK_HIT = ":zap:"
MARK_STORED = ":floppy_disk:"
MARK_NOT_STORED = ":red_circle:"
MARK_BYPASS = ":fast_forward:"

# Answers are built here, not by `http.Response.make`: mitmproxy type-checks every field of a new
# message with typing introspection (MessageData.__post_init__, whenever Python runs without -O),
# and `make` then sets the body through the content-encoding machinery and a header rebuild. That
# was ~50 us, a third of a hit's time in our hooks. A copy of a made response's data skips both;
# tests/addon/test_addon.py pins that the result equals what `make` gives.
MADE = http.Response.make(200)


def make_response(status: int, body: bytes, headers: list[tuple[str, str]]) -> http.Response:
    fields = [(name.encode(), value.encode()) for name, value in headers]
    if any(name.lower() in (b"content-encoding", b"transfer-encoding") for name, _ in fields):
        return http.Response.make(status, body, http.Headers(fields))  # make encodes or frames the body
    fields.append((b"content-length", b"%d" % len(body)))
    data = copy.copy(MADE.data)
    data.status_code, data.reason = status, status_codes.RESPONSES.get(status, "").encode()
    data.headers, data.content = http.Headers(fields), body
    data.timestamp_start = data.timestamp_end = time.time()
    response = http.Response.__new__(http.Response)
    response.data = data
    return response


# mitmproxy's Headers lower-case and re-encode every field on each lookup and rebuild them all on
# each assignment: ~5 us a call, and a miss made a dozen. These read and write the fields directly.

def text_fields(headers: http.Headers) -> list[tuple[str, str]]:
    """All fields as text, decoded as mitmproxy decodes them."""
    return [(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            for name, value in headers.fields]


def header(headers: http.Headers, name: bytes) -> str:
    """The first value of a field (`name` lower-case), or ""."""
    for field, value in headers.fields:
        if field.lower() == name:
            return value.decode("utf-8", "surrogateescape")
    return ""


def add_headers(headers: http.Headers, added: list[tuple[str, str]]) -> None:
    """Set these fields, replacing any of the same names, in one rebuild."""
    names = {name.lower().encode() for name, _ in added}
    headers.fields = tuple(field for field in headers.fields if field[0].lower() not in names) + tuple(
        (name.encode(), value.encode("utf-8", "surrogateescape")) for name, value in added)


def content(message: http.Message, limit: int) -> bytes:
    """The decoded body, decoded within `limit` bytes (llm_cache.decode): raises TooLarge past it,
    ValueError when the encoding does not decode. Most bodies are not encoded: they are read as they are."""
    raw = message.raw_content or b""
    encoding = header(message.headers, b"content-encoding")
    if encoding:
        return decode(raw, encoding, limit)
    if len(raw) > limit:
        raise TooLarge(f"{len(raw)} bytes")
    return raw


def note(flow: http.HTTPFlow, mark: str, outcome: str, *, key: str = "", detail: str = "") -> None:
    """What a mitmweb user sees of the cache's work (`~marked` finds every flow it recognised): the
    outcome first (`HIT`, `MISS stored`, `MISS skipped: …`, `BYPASS: …`), so the comment column
    says it even when it is narrow, then what else there is to know, then the entry's key."""
    flow.marked = mark
    flow.comment = " · ".join(part for part in (outcome, detail, key[:12]) if part)


_date: tuple[int, str] = (0, "")


def http_date(now: float) -> str:
    """`now` as an HTTP Date, made once a second."""
    global _date
    second = int(now)
    if _date[0] != second:
        _date = (second, formatdate(second, usegmt=True))
    return _date[1]


def with_date(headers: list[tuple[str, str]], now: float) -> list[tuple[str, str]]:
    """A replayed answer's headers with today's Date, as mitmproxy's server replay gives it."""
    return [(name, http_date(now)) if name.lower() == "date" else (name, value) for name, value in headers]
