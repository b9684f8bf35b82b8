"""The plain data a cache entry is made of, shared by the addon and the storage layer, and what is
derived from it only when it is written (in the writer process, off the event loop)."""

import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from llm_cache import formats, keys
from llm_cache.endpoints import Family
from llm_cache.normalise import DEFAULT_RULES, KeyRules, canonical_form
from llm_cache.status import is_status_header

# Never stored: they describe one connection or one encoding of the body, not the answer, or they
# are per-user state (cookies). Our own headers are added fresh on every answer.
_UNSTORED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length", "content-encoding", "set-cookie",
    "set-cookie2",
})


def headers_to_keep(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in fields
        if name.lower() not in _UNSTORED_HEADERS
        and not is_status_header(name)
        and keys.is_utf8(name + value)  # not valid UTF-8 (kept by mitmproxy as surrogates): not kept
    ]


class Record(NamedTuple):
    """A stored response. `body` is decoded: JSON, or the SSE bytes of a recorded stream.
    A record read back for a hit carries only what answering needs. A tuple: it is built on every
    miss and hit, and pickled to the writer process, where a frozen dataclass cost several times more."""

    key: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    is_stream: bool
    created_at: float
    family: str = ""
    host: str = ""
    model: str = ""
    url: str = ""  # the request URL, without credential query parameters
    keyed_headers: tuple[tuple[str, str], ...] = ()  # the request headers that are part of the key
    request_body: bytes = b""  # the request body as sent (decoded); never headers, so never credentials
    expires_at: float | None = None  # set when the request gave a TTL (X-LLM-Cache-TTL)
    sample: int = 0  # which of a request's recorded responses this is (llm_cache_samples)
    tags: tuple[str, ...] = ()  # from X-LLM-Cache-Tags, for invalidation
    profile: str = ""  # the agent profile the request was keyed with (llm_cache.profiles)
    user_agent: str = ""  # the client's User-Agent, kept with the request for `llmcache.explain`
    assembled: bytes | None = None  # a stream entry's JSON answer, read back only for a JSON request
    deps: tuple[tuple[str, str], ...] = ()  # the dependency versions it was recorded under (X-LLM-Cache-Deps)
    namespace: str = ""  # X-LLM-Cache-Namespace of the request that recorded it (also in its key)
    semantic: "Embedded | None" = None  # its last turn's embedding, with the semantic tier on


class Embedded(NamedTuple):
    """What the semantic tier keeps of an entry (cache_models.CacheVector)."""

    context: str
    embedder: str
    text: str
    vector: bytes


class NotStorable(ValueError):
    """A stream that is not a complete success: it ended early, or carries an error event."""


def derived_columns(record: Record) -> dict[str, Any]:
    """The derived columns of an entry: the request for inspection (zlib-compressed: agents resend
    the same long prompts, and a 20 KB row costs SQLite ~10x a 2 KB one), usage tokens, headers as
    JSON, and a stream's assembled JSON answer (so a JSON request answered from a stream costs what
    a JSON hit costs). Raises NotStorable for a stream that is not a complete success. Runs in the
    writer process, off the event loop: the request is packed as sent, without parsing it, and
    canonicalised when it is read back."""
    family = Family(record.family)
    if record.is_stream and (problem := formats.stream_problem(family, record.body)):
        raise NotStorable(problem)  # checked here, off the event loop: an 800-event stream costs ~3 ms
    whole = formats.assembled(family, record.body) if record.is_stream else None
    usage = formats.usage_in(whole) if record.is_stream else formats.usage_of(family, record.body, is_stream=False)
    return {
        "assembled": orjson.dumps(whole) if whole is not None else None,
        "headers": orjson.dumps(record.headers).decode(),
        "request": pack_request(record.url, record.keyed_headers, record.request_body, record.profile,
                                record.user_agent),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }


def pack_request(url: str, keyed_headers: tuple[tuple[str, str], ...], body: bytes, profile: str = "",
                 user_agent: str = "") -> bytes:
    """zlib of {"url", "headers", "profile", "user_agent", "body"}, the body spliced in as sent (it
    parsed as JSON on the way in)."""
    head = orjson.dumps({"url": url, "headers": dict(keyed_headers), "profile": profile, "user_agent": user_agent})
    return zlib.compress(head[:-1] + b',"body":' + body + b"}", 1)


def unpack_request(blob: bytes, rules: KeyRules = DEFAULT_RULES, family: Family | None = None) -> dict[str, Any]:
    """The stored request of an entry, {"url", "headers", "profile", "user_agent", "body"}, with the
    body in the canonical form its key was made from (llm_cache.normalise)."""
    document = keys.parse_json(zlib.decompress(blob))
    document["body"] = canonical_form(document["body"], rules, family=family, profile=document.get("profile", ""))
    return document
