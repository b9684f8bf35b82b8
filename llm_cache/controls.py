"""Per-request controls: what one request asks of the cache, read from its headers.

- Standard `Cache-Control`: `no-store` (do not record), `no-cache` (go upstream and overwrite),
  `max-age=N` (accept only entries younger than N s), `only-if-cached` (replay or 504).
- The seed cache servers' bypass header `X-Cache-Bypass: true` (their body controls, `"cache":
  false` and `"cache_control": {"enabled": false}`, are read with the body: llm_cache.keys).
- Ours: `X-LLM-Cache-TTL: <s>`, `X-LLM-Cache-Namespace: <name>`, `X-LLM-Cache-Tags: a,b`, and
  `X-LLM-Cache-Reject: <key>[,<key>]`: an agent reports an answer it got as bad (the key from its
  X-LLM-Cache-Key): the entry is deleted, and a request it would answer goes upstream and is recorded anew.
  `X-LLM-Cache-Semantic-Reject: <key>`: the semantic answer it got (HIT-SEMANTIC) was wrong for its
  request: this request goes upstream, and after llm_cache_semantic_block_after such reports that
  entry is never a semantic answer again (its exact repeats still hit). `X-LLM-Cache-Tiers: exact`:
  this request is answered by the exact tier alone (the semantic and synthesis tiers' own calls say it).
- `X-LLM-Cache-Deps: table:products=abc123, doc:42` (Cachecore's `X-Cachecore-Deps` too): the
  answer depends on these versions; an entry recorded under another version of one is stale.

Our headers and the seed servers' are removed before the request goes upstream. A malformed value
is not guessed at: the request bypasses the cache and the reason says which header was wrong.
"""

import re
from collections.abc import Iterable
from typing import NamedTuple

# Request headers that are for the cache only and never reach a provider.
OWN_HEADERS = frozenset({"x-llm-cache-ttl", "x-llm-cache-namespace", "x-llm-cache-tags", "x-cache-bypass",
                         "x-llm-cache-reject", "x-llm-cache-deps", "x-cachecore-deps",
                         "x-llm-cache-semantic-reject", "x-llm-cache-tiers"})

_NAME = re.compile(r"[A-Za-z0-9._:/@+-]{1,128}")
_KEY = re.compile(r"[0-9a-f]{64}")
_TRUE = frozenset({"1", "true", "yes", "on"})


class Controls(NamedTuple):
    bypass: str | None = None  # why this request must not touch the cache at all
    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None
    only_if_cached: bool = False
    ttl: int | None = None
    namespace: str = ""
    tags: tuple[str, ...] = ()
    reject: tuple[str, ...] = ()  # entries the client reports as bad answers
    semantic_reject: tuple[str, ...] = ()  # entries the client reports as wrong semantic answers to this request
    exact_only: bool = False  # X-LLM-Cache-Tiers: exact (the tiers' own calls say it too)
    deps: tuple[tuple[str, str], ...] = ()  # (dependency, version or "" for its current one)


NO_CONTROLS = Controls()


def read_controls(headers: Iterable[tuple[str, str]]) -> Controls:
    """The controls of a request's headers (names in any case)."""
    fields: dict[str, object] = {}
    for name, value in headers:
        name = name.lower()
        if name == "cache-control":
            for directive in value.split(","):
                _read_directive(directive.strip().lower(), fields)
        elif name == "x-cache-bypass":
            if value.strip().lower() in _TRUE:
                fields["bypass"] = f"X-Cache-Bypass: {value.strip()}"
        elif name == "x-llm-cache-ttl":
            ttl = _seconds(value)
            if ttl is None:
                return Controls(bypass=f"invalid X-LLM-Cache-TTL {value!r} (want whole seconds)")
            fields["ttl"] = ttl
        elif name == "x-llm-cache-namespace":
            if not _NAME.fullmatch(value.strip()):
                return Controls(bypass=f"invalid X-LLM-Cache-Namespace {value!r} (want 1-128 of A-Za-z0-9._:/@+-)")
            fields["namespace"] = value.strip()
        elif name == "x-llm-cache-tags":
            tags = tuple(t.strip() for t in value.split(",") if t.strip())
            if not all(_NAME.fullmatch(t) for t in tags):
                return Controls(bypass=f"invalid X-LLM-Cache-Tags {value!r} (want a,b with A-Za-z0-9._:/@+-)")
            fields["tags"] = tuple(sorted(set(fields.get("tags", ())) | set(tags)))  # type: ignore[call-overload]
        elif name in ("x-llm-cache-reject", "x-llm-cache-semantic-reject"):
            keys = tuple(k.strip().lower() for k in value.split(",") if k.strip())
            field = "reject" if name == "x-llm-cache-reject" else "semantic_reject"
            if not keys or not all(_KEY.fullmatch(k) for k in keys):
                header = "X-LLM-Cache-Reject" if field == "reject" else "X-LLM-Cache-Semantic-Reject"
                return Controls(bypass=f"invalid {header} {value!r} (want the 64-hex X-LLM-Cache-Key of an answer)")
            fields[field] = tuple(sorted(set(fields.get(field, ())) | set(keys)))  # type: ignore[call-overload]
        elif name == "x-llm-cache-tiers":
            if value.strip().lower() != "exact":
                return Controls(bypass=f"invalid X-LLM-Cache-Tiers {value!r} (want exact)")
            fields["exact_only"] = True
        elif name in ("x-llm-cache-deps", "x-cachecore-deps"):
            deps = read_deps(value)
            if deps is None:
                header = "X-LLM-Cache-Deps" if name == "x-llm-cache-deps" else "X-Cachecore-Deps"
                return Controls(bypass=f"invalid {header} {value!r} (want name=version, name; names and versions "
                                       "of A-Za-z0-9._:/@+-)")
            fields["deps"] = tuple(sorted(dict([*fields.get("deps", ()), *deps]).items()))  # type: ignore[misc]
    return Controls(**fields)  # type: ignore[arg-type]


def read_deps(value: str) -> tuple[tuple[str, str], ...] | None:
    """`name=version, name` as (name, version) pairs ("" for no version); None when malformed."""
    deps = []
    for item in value.split(","):
        name, _, version = (part.strip() for part in item.partition("="))
        if not item.strip():
            continue
        if not _NAME.fullmatch(name) or (version and not _NAME.fullmatch(version)):
            return None
        deps.append((name, version))
    return tuple(deps) or None


def _read_directive(directive: str, fields: dict[str, object]) -> None:
    if directive == "no-store":
        fields["no_store"] = True
    elif directive == "no-cache":
        fields["no_cache"] = True
    elif directive == "only-if-cached":
        fields["only_if_cached"] = True
    elif directive.startswith("max-age="):
        seconds = _seconds(directive[len("max-age="):].strip('"'))
        if seconds is not None:  # RFC 9111: an invalid max-age is ignored
            fields["max_age"] = seconds


def _seconds(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def has_own_headers(names: Iterable[str]) -> bool:
    return any(name.lower() in OWN_HEADERS for name in names)
