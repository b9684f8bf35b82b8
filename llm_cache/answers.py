"""Turning stored entries into answers and upstream answers into entries: the two decisions of the
cache, free of mitmproxy so they can be tested as plain data."""

from typing import NamedTuple

import orjson

from llm_cache import formats
from llm_cache.endpoints import Family
from llm_cache.keys import RequestTarget
from llm_cache.records import Record, storable_headers

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


class Answer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_event_stream(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"


def replay(record: Record, family: Family, *, want_stream: bool, include_usage: bool) -> Answer | None:
    """The answer to a request from a stored entry, in the wire format the request asked for
    (stream or JSON), or None when this entry cannot be turned into that format."""
    headers = list(record.headers)
    if record.is_stream == want_stream:
        body = record.body
    elif not formats.can_convert(family, from_stream=record.is_stream):
        return None
    else:
        content_type = SSE_CONTENT_TYPE if want_stream else JSON_CONTENT_TYPE
        try:
            if want_stream:
                body = formats.json_to_stream(family, record.body, include_usage=include_usage)
            else:
                body = formats.stream_to_json(family, record.body)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # an entry we cannot convert is a miss: the fresh answer replaces it
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"] + [("content-type", content_type)]
    return Answer(record.status, headers, body)


def replay_miss(family: Family, message: str) -> Answer:
    """A replay-only miss, failing loudly: 504 (RFC 9111's answer to only-if-cached) with an error
    body in the provider's own shape, so the SDK shows the message, and `x-should-retry: false` so
    the OpenAI and Anthropic SDKs do not retry it."""
    if family.provider == "anthropic":
        error: dict = {"type": "error", "error": {"type": "cache_miss", "message": message}}
    else:
        error = {"error": {"message": message, "type": "cache_miss", "param": None, "code": "llm_cache_miss"}}
    headers = [("content-type", JSON_CONTENT_TYPE), ("x-should-retry", "false")]
    return Answer(504, headers, orjson.dumps(error))


def storage_problem(family: Family, status: int, body: bytes, *, is_stream: bool) -> str | None:
    """Why an upstream answer must not be stored, or None for a complete success."""
    if not 200 <= status < 300:
        return f"upstream status {status}"
    if is_stream:
        return formats.stream_problem(family, body)
    return formats.json_problem(family, body)


def make_record(
    *,
    key: str,
    family: Family,
    target: RequestTarget,
    model: str,
    request_body: bytes,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    is_stream: bool,
    now: float,
    expires_at: float | None = None,
    sample: int = 0,
    tags: tuple[str, ...] = (),
) -> Record:
    return Record(
        key=key,
        status=status,
        headers=storable_headers(headers),
        body=body,
        is_stream=is_stream,
        created_at=now,
        family=family.value,
        host=target.host,
        model=model,
        url=target.url,
        keyed_headers=target.headers,
        request_body=request_body,
        expires_at=expires_at,
        sample=sample,
        tags=tags,
    )
