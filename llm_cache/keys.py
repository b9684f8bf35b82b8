"""Cache keys: what makes two LLM requests "the same", and nothing that doesn't.

key = SHA-256( JSON[scheme version, method, scheme, host, port, path, sorted query, keyed headers]
               + "\\n" + SHA-256(canonical body) )

The canonical body is the parsed JSON with transport-only, control and volatile fields removed or
normalised (llm_cache.normalise), keys sorted and compact separators. Credentials are never part of
a key: auth headers are not read (the `credential` scope adds an HMAC of them, never the value), and
credential query parameters (Gemini's ?key=) are dropped. A namespace or credential scope is the
key's partition.
"""

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from llm_cache.credentials import CREDENTIAL_QUERY_PARAMS
from llm_cache.endpoints import Family, Route, has_expected_shape, model_of, streams
from llm_cache.normalise import DEFAULT_RULES, KeyRules, canonical_form, is_control_field
from llm_cache.secrets import SecretScanner

# Bump when anything below changes what a key means; tests/unit/test_keys.py pins a golden key.
# 2: tool-call ids renumbered only where the protocol pairs them, agent profiles, NaN kept apart from null.
KEY_SCHEME = "llm-cache/2"

# Request headers that change what the model does, so they are part of the key.
KEYED_HEADERS = ("anthropic-beta", "anthropic-version", "openai-beta")


_GEMINI_STREAM = ":streamGenerateContent"


class RequestTarget(NamedTuple):
    """Where a request goes, captured before other addons (e.g. --map-remote) rewrite it."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]

    @property
    def url(self) -> str:
        """The request URL without credential query parameters, for storage and display."""
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.scheme}://{self.host}:{self.port}{self.path}" + (f"?{query}" if query else "")


class BodyFacts(NamedTuple):
    """What the key, the policy and the answer need from a request body; cheap to memoise."""

    digest: str
    model: str
    stream: bool
    include_usage: bool
    deterministic: bool  # temperature 0, or a seed
    bypass: str | None  # a control field in the body asking not to be cached, as the user wrote it
    has_controls: bool  # control fields that must be removed before the request goes upstream
    secret: str | None = None  # the kind of credential the body carries, when it was scanned for them


def make_target(
    method: str,
    scheme: str,
    host: str,
    port: int,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Iterable[tuple[str, str]],
) -> RequestTarget:
    """Normalise the parts of a request line and headers that belong in a key. Raises ValueError
    for a keyed header that is not UTF-8 (its value could not be written in the key)."""
    kept_query = sorted((k, v) for k, v in query if k.lower() not in CREDENTIAL_QUERY_PARAMS)
    header_map: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in KEYED_HEADERS:
            if not value.isascii() and not is_utf8(value):
                raise ValueError(f"the {lname} header is not UTF-8")
            header_map.setdefault(lname, []).append(value)
    keyed = tuple((name, normalise_header_value(name, header_map[name])) for name in sorted(header_map))
    return RequestTarget(
        method=method.upper(),
        scheme=scheme.lower(),
        host=host.lower().rstrip("."),
        port=port,
        path=path.split("?", 1)[0],
        query=tuple(kept_query),
        headers=keyed,
    )


def is_utf8(value: str) -> bool:
    """Header text decoded with surrogateescape keeps bytes that were not UTF-8 as surrogates."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def normalise_header_value(name: str, values: list[str]) -> str:
    """Beta flags are a set: their order and repetition do not change meaning."""
    if name in ("anthropic-beta", "openai-beta"):
        flags = {flag.strip() for value in values for flag in value.split(",") if flag.strip()}
        return ",".join(sorted(flags))
    return ",".join(value.strip() for value in values)


def parse_json(raw: bytes) -> Any:
    """Parse a JSON body; raises ValueError. Falls back to the standard library for what orjson
    refuses but JSON allows in practice (integers beyond 64 bits)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def canonical_body(body: dict[str, Any], rules: KeyRules = DEFAULT_RULES, *, family: Family | None = None,
                   profile: str = "") -> bytes:
    """Sorted, compact JSON of a body's canonical form: what its key digests."""
    return canonical_json(canonical_form(body, rules, family=family, profile=profile))


def body_digest(body: dict[str, Any], rules: KeyRules = DEFAULT_RULES, *, family: Family | None = None,
                profile: str = "") -> str:
    """SHA-256 of a body's canonical form: the part of a key the body makes (llm_cache.semantic keys
    a request without its last turn with it too)."""
    return hashlib.sha256(canonical_body(body, rules, family=family, profile=profile)).hexdigest()


def canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits, or NaN / Infinity (normalise.NonFinite): written as JSON5 does
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_facts(
    route: Route, body: Any, rules: KeyRules = DEFAULT_RULES, scanner: SecretScanner | None = None,
    profile: str = "",
) -> BodyFacts | None:
    """Key-relevant facts of a parsed body, or None when it is not the call its path suggests.
    With a scanner, also whether the body carries a credential (so the body is parsed once).
    `profile`: the agent profile the request was recognised as (llm_cache.profiles)."""
    if not has_expected_shape(route, body):
        return None
    stream_options = body.get("stream_options")
    controls = [name for name, value in body.items() if is_control_field(name, value)]
    bypass = None
    if body.get("cache") is False:
        bypass = '"cache": false'
    elif "cache_control" in controls and body["cache_control"].get("enabled") is False:
        bypass = '"cache_control": {"enabled": false}'
    return BodyFacts(
        digest=body_digest(body, rules, family=route.family, profile=profile),
        model=model_of(route, body),
        stream=streams(route, body),
        include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
        deterministic=body.get("temperature") == 0 or body.get("seed") is not None,
        bypass=bypass,
        has_controls=bool(controls),
        secret=scanner.scan_value(body) if scanner is not None else None,
    )


def without_controls(raw: bytes) -> bytes:
    """The body as the provider must see it: our control fields removed (a provider must never see
    `"cache": false`). Only called for the rare body that has them."""
    body = parse_json(raw)
    return canonical_json({k: v for k, v in body.items() if not is_control_field(k, v)})


def cache_key(target: RequestTarget, body_digest: str, partition: str = "") -> str:
    """`partition` keeps entries of one namespace or credential apart; "" is the shared cache."""
    path, query = target.path, target.query
    if path.endswith(_GEMINI_STREAM):  # Gemini says "stream" in the path: a JSON call and a stream share a key
        path = path[: -len(_GEMINI_STREAM)] + ":generateContent"
        query = tuple((k, v) for k, v in query if k != "alt")
    parts: list[Any] = [KEY_SCHEME, target.method, target.scheme, target.host, target.port, path,
                        query, target.headers]
    if partition:
        parts.append(partition)
    return hashlib.sha256(orjson.dumps(parts) + b"\n" + body_digest.encode()).hexdigest()


class BodyMemo:
    """Byte-identical bodies are the common case when agents replay: remember the facts of recently
    seen raw bodies so a repeat skips parsing and canonicalising.

    The memo is keyed by the body itself. A dict hashes it once (SipHash: a third of SHA-256's cost
    on 20 KB, paid by every request, misses included) and compares the bytes on a match, so two
    bodies never share facts. The price is keeping the bodies: at most `max_bytes` of them."""

    def __init__(self, size: int = 4096, rules: KeyRules = DEFAULT_RULES,
                 scanner: SecretScanner | None = None, max_bytes: int = 32 << 20) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self.rules = rules
        self.scanner = scanner
        self._facts: OrderedDict[tuple[Route, str, bytes], BodyFacts | None] = OrderedDict()

    def facts(self, route: Route, raw: bytes, profile: str = "") -> BodyFacts | None:
        """Facts of a raw (decoded) body; raises ValueError when it is not JSON or nested too deep."""
        memo_key = (route, profile, raw)
        try:
            self._facts.move_to_end(memo_key)
            return self._facts[memo_key]
        except KeyError:
            pass
        facts = body_facts(route, parse_json(raw), self.rules, self.scanner, profile)
        if len(raw) <= self._max_bytes // 8:  # a few huge bodies must not push out everything else
            self._facts[memo_key] = facts
            self._bytes += len(raw)
            while len(self._facts) > self._size or self._bytes > self._max_bytes:
                (_, _, forgotten), _ = self._facts.popitem(last=False)
                self._bytes -= len(forgotten)
        return facts
