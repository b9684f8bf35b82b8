"""Turning stored entries into answers and upstream answers into entries: the two decisions of the
cache, free of mitmproxy so they can be tested as plain data."""

from typing import NamedTuple

import orjson

from llm_cache import formats
from llm_cache.endpoints import Family, Wire
from llm_cache.keys import RequestTarget
from llm_cache.records import Embedded, Record, headers_to_keep

JSON_CONTENT_TYPE = "application/json"
CONTENT_TYPES = {
    Wire.JSON: JSON_CONTENT_TYPE,
    Wire.SSE: "text/event-stream; charset=utf-8",
    Wire.NDJSON: "application/x-ndjson",
    Wire.JSON_ARRAY: "application/json; charset=UTF-8",
}
# Response types that are streams whatever the request said (Ollama's NDJSON among them; Bedrock's
# binary event stream is only ever forwarded).
_NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl"})
_STREAM_TYPES = _NDJSON_TYPES | {"text/event-stream", "application/vnd.amazon.eventstream"}


class Answer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def is_stream_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _STREAM_TYPES


def wire_of(content_type: str, *, requested: Wire) -> Wire:
    """How an upstream answer is framed: by its type, except Gemini's JSON-array stream, which is
    typed as plain JSON and known by what the request asked for."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "text/event-stream":
        return Wire.SSE
    if kind in _NDJSON_TYPES:
        return Wire.NDJSON
    return Wire.JSON_ARRAY if requested is Wire.JSON_ARRAY else Wire.JSON


def refused_websocket() -> Answer:
    """426 to a WebSocket upgrade: the Codex CLI then falls back to HTTP + SSE, which is cached."""
    message = ("llm-cache: WebSocket transport is not cached; use HTTP with streaming "
               "(set llm_cache_refuse_websocket=false to let the upgrade through uncached)")
    error = {"error": {"message": message, "type": "upgrade_required", "param": None, "code": "websocket_refused"}}
    return Answer(426, [("content-type", JSON_CONTENT_TYPE)], orjson.dumps(error))


def replay(record: Record, family: Family, *, want: Wire, include_usage: bool) -> Answer | None:
    """The answer to a request from a stored entry, in the wire format the request asked for
    (JSON, or its stream framing), or None when this entry cannot be turned into that format."""
    if want is (formats.stored_wire(family) if record.is_stream else Wire.JSON):
        return Answer(record.status, list(record.headers), record.body)
    if want is Wire.JSON and record.assembled is not None:  # assembled when it was written
        return Answer(record.status, _typed(record.headers, want), record.assembled)
    try:
        if want is Wire.JSON:
            body = formats.stream_to_json(family, record.body)
        else:
            stored = record.body if record.is_stream else formats.json_to_stream(
                family, record.body, include_usage=include_usage)
            body = formats.stream_as(family, want, stored)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # an entry we cannot convert is a miss: the fresh answer replaces it
    return Answer(record.status, _typed(record.headers, want), body)


def framed_for_storage(family: Family, wire: Wire, headers: list[tuple[str, str]], body: bytes
                ) -> tuple[list[tuple[str, str]], bytes]:
    """An upstream answer as it is stored: a stream in its family's stored framing (Gemini's JSON
    array becomes SSE), typed to match. Raises ValueError when a stream does not parse."""
    if wire is Wire.JSON:
        return headers, body
    stored_wire = formats.stored_wire(family)
    if stored_wire is wire:
        return headers, body
    return _typed(headers, stored_wire), formats.stored_stream(family, wire, body)


def _typed(headers: list[tuple[str, str]], wire: Wire) -> list[tuple[str, str]]:
    return [(n, v) for n, v in headers if n.lower() != "content-type"] + [("content-type", CONTENT_TYPES[wire])]


def replay_miss(family: Family, message: str, *, only_if_cached: bool = False) -> Answer:
    """A miss that may not go upstream, failing loudly in the provider's own error shape, so the
    client shows the message, and never retried.

    In replay mode this is a 400: measured with the real clients, every agent retries a 5xx whatever
    `x-should-retry` says (the Codex CLI 30 times over 25 s, the Gemini CLI for 5 minutes) and
    shows a 400's message at once. The OpenAI error code `invalid_prompt` is the one the Codex CLI
    prints as it is; the others wrap or replace the message. A request that itself asked for
    `Cache-Control: only-if-cached` gets RFC 9111's 504, with `x-should-retry: false` for the SDKs."""
    status = 504 if only_if_cached else 400
    error: dict
    if family.provider == "anthropic":
        error = {"type": "error", "error": {"type": "cache_miss", "message": message}}
    elif family.provider == "gemini":
        error = {"error": {"code": status, "message": message,
                           "status": "DEADLINE_EXCEEDED" if only_if_cached else "INVALID_ARGUMENT"}}
    elif family.provider == "ollama":
        error = {"error": message}
    else:
        error = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                           "code": "llm_cache_miss" if only_if_cached else "invalid_prompt"}}
    headers = [("content-type", JSON_CONTENT_TYPE), ("x-should-retry", "false")]
    return Answer(status, headers, orjson.dumps(error))


def why_not_recorded(family: Family, status: int, body: bytes, *, is_stream: bool) -> str | None:
    """Why an upstream answer must not be recorded, or None for a complete success, as far as the
    event loop checks it: the status, and a JSON answer's body. A stream's events are checked by the
    writer process (records.derived_columns), off the loop: an 800-event stream costs ~3 ms."""
    if not 200 <= status < 300:
        return f"upstream status {status}"
    if is_stream:
        return None
    return formats.json_problem(family, body)


def early_end_problem(family: Family, body: bytes) -> str | None:
    """Why a stream that ended in an error (the client or the connection went first) must not be
    stored even if it passes why_not_recorded: an OpenAI-style chunk stream is complete only once
    `[DONE]` has passed (a finish_reason chunk may still be followed by the usage chunk)."""
    if family in (Family.OPENAI_CHAT, Family.OPENAI_COMPLETIONS) and not body.rstrip().endswith(b"data: [DONE]"):
        return "stream ended before [DONE]"
    return None


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
    profile: str = "",
    user_agent: str = "",
    deps: tuple[tuple[str, str], ...] = (),
    namespace: str = "",
    semantic: Embedded | None = None,
) -> Record:
    return Record(
        key=key,
        status=status,
        headers=headers_to_keep(headers),
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
        profile=profile,
        user_agent=user_agent,
        deps=deps,
        namespace=namespace,
        semantic=semantic,
    )
