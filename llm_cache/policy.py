"""What the cache may do, per proxy: the `llm_cache_*` options parsed into one immutable Settings.

Each parser is a small pure function raising ValueError with a message fit for the user; addon.py
turns that into mitmproxy's OptionsError. Nothing here imports mitmproxy.
"""

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from llm_cache import embedders, paths, profiles, upstream_keys
from llm_cache.guards import Guard
from llm_cache.normalise import DEFAULT_IGNORED_FIELDS, KeyRules
from llm_cache.tier_settings import Semantic, Synthesis

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Mode(StrEnum):
    RECORD = "record"  # answer hits, record misses
    REPLAY = "replay"  # never contact an upstream: a miss is a 400 naming the closest stored request
    REFRESH = "refresh"  # always go upstream and overwrite
    READONLY = "readonly"  # answer hits, never write
    WRITEONLY = "writeonly"  # never answer from the cache, record everything
    OFF = "off"  # pass everything through

    @property
    def looks_up(self) -> bool:
        return self in (Mode.RECORD, Mode.REPLAY, Mode.READONLY)

    @property
    def records(self) -> bool:
        return self in (Mode.RECORD, Mode.REFRESH, Mode.WRITEONLY)


class Scope(StrEnum):
    GLOBAL = "global"  # one cache for everyone behind this proxy
    CREDENTIAL = "credential"  # entries kept apart per API key (by an HMAC of it, never the key)


class Temperature(StrEnum):
    ANY = "any"  # replaying sampled agent runs is the point
    DETERMINISTIC = "deterministic"  # only temperature 0, or a seed


@dataclass(frozen=True)
class Lists:
    """Shell-style globs; an empty allow list allows everything, deny beats allow."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def refuses(self, value: str) -> str | None:
        value = value.lower()
        for pattern in self.deny:
            if fnmatchcase(value, pattern):
                return f"denied by {pattern!r}"
        if self.allow and not any(fnmatchcase(value, pattern) for pattern in self.allow):
            return "not in the allow list"
        return None


@dataclass(frozen=True)
class Settings:
    mode: Mode = Mode.RECORD
    ttl: int = 0  # seconds; 0 = entries never expire
    stale_if_error: bool = False
    hosts: Lists = field(default_factory=Lists)
    models: Lists = field(default_factory=Lists)
    families: Lists = field(default_factory=Lists)
    max_request_bytes: int = 16 * 2**20
    max_response_bytes: int = 64 * 2**20
    temperature: Temperature = Temperature.ANY
    scan_secrets: bool = True
    samples: int = 1
    scope: Scope = Scope.GLOBAL
    compat_headers: bool = False
    upstream_keys: tuple[tuple[str, str], ...] = ()  # (host glob, environment variable naming the real key)
    refresh_date: bool = True  # a hit's Date header is today's
    max_size: int = 0  # bytes; past it the writer evicts the least recently used entries (0: no bound)
    refuse_websocket: bool = True  # Codex CLI: answer its WebSocket upgrade with 426 so it falls back to SSE
    write_retry: int = 120  # seconds a write that failed for a reason that may pass is tried again
    lookup_timeout_ms: int = 200  # a lookup in a database across the network, at most
    single_flight_wait: int = 300  # seconds identical fresh requests wait for the first one in flight
    key_rules: KeyRules = field(default_factory=lambda: KeyRules(profiles=profiles.load()))
    dashboard_host: str = "llm-cache.local"  # the proxy's own page; "": none
    dashboard_clients: tuple[Network, ...] = ()  # besides loopback, who may see it
    semantic: Semantic | None = None  # the semantic tier, when it is on
    synthesis: Synthesis | None = None  # the synthesis tier, when it is on

    def refuses(self, host: str, model: str, family: str) -> str | None:
        """Why the allow/deny lists keep this call out of the cache, or None."""
        for what, lists, value in (("host", self.hosts, host), ("model", self.models, model),
                                   ("family", self.families, family)):
            reason = lists.refuses(value)
            if reason:
                return f"{what} {value} {reason}"
        return None


def parse_enum[E: StrEnum](enum: type[E], option: str, value: str) -> E:
    try:
        return enum(value.strip().lower())
    except ValueError:
        valid = ", ".join(member.value for member in enum)
        raise ValueError(f"{option} must be one of {valid}; got {value!r}") from None


def parse_non_negative(option: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{option} must be 0 or more; got {value}")
    return value


def parse_globs(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in values if v.strip())


def parse_patterns(option: str, values: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for value in values:
        try:
            patterns.append(re.compile(value))
        except re.error as e:
            raise ValueError(f"{option}: {value!r} is not a valid regular expression ({e})") from None
    return tuple(patterns)


def parse_paths(option: str, values: Sequence[str]) -> tuple[paths.Path, ...]:
    parsed = []
    for value in values:
        try:
            parsed.append(paths.parse(value))
        except ValueError as e:
            raise ValueError(f"{option}: {e}") from None
    return tuple(parsed)


def settings_from(options: Mapping[str, Any]) -> Settings:
    """Settings from the llm_cache_* option values (names without the prefix); raises ValueError."""
    samples = options["samples"]
    if samples < 1:
        raise ValueError(f"llm_cache_samples must be 1 or more; got {samples}")
    ignored = DEFAULT_IGNORED_FIELDS + parse_paths("llm_cache_ignore_fields", options["ignore_fields"])
    semantic = parse_semantic(options)
    return Settings(
        mode=parse_enum(Mode, "llm_cache_mode", options["mode"]),
        ttl=parse_non_negative("llm_cache_ttl", options["ttl"]),
        stale_if_error=options["stale_if_error"],
        hosts=Lists(parse_globs(options["allow_hosts"]),
                    parse_globs(options["deny_hosts"])),
        models=Lists(parse_globs(options["allow_models"]),
                     parse_globs(options["deny_models"])),
        families=Lists(parse_globs(options["allow_families"]),
                       parse_globs(options["deny_families"])),
        max_request_bytes=parse_non_negative("llm_cache_max_request_bytes", options["max_request_bytes"]),
        max_response_bytes=parse_non_negative("llm_cache_max_response_bytes", options["max_response_bytes"]),
        temperature=parse_enum(Temperature, "llm_cache_temperature", options["temperature"]),
        scan_secrets=options["scan_secrets"],
        samples=samples,
        scope=parse_enum(Scope, "llm_cache_scope", options["scope"]),
        compat_headers=options["compat_headers"],
        refuse_websocket=options["refuse_websocket"],
        refresh_date=options["refresh_date"],
        upstream_keys=upstream_keys.parse(options["upstream_keys"]),
        max_size=parse_non_negative("llm_cache_max_size", options["max_size"]),
        write_retry=parse_non_negative("llm_cache_write_retry", options["write_retry"]),
        lookup_timeout_ms=parse_non_negative("llm_cache_lookup_timeout_ms", options["lookup_timeout_ms"]),
        single_flight_wait=parse_non_negative("llm_cache_single_flight_wait", options["single_flight_wait"]),
        key_rules=KeyRules(
            ignored=ignored,
            normalisers=parse_patterns("llm_cache_normalise", options["normalise"]),
            profiles=profiles.load(options["profiles"]),
            portable=options["portable"],
        ),
        dashboard_host=parse_host("llm_cache_dashboard_host", options["dashboard_host"]),
        dashboard_clients=parse_networks("llm_cache_dashboard_clients", options["dashboard_clients"]),
        semantic=semantic,
        synthesis=parse_synthesis(options, semantic),
    )


def parse_host(option: str, value: str) -> str:
    """A host name as mitmproxy's `pretty_host` gives it (lower case, no trailing dot); "" stays ""."""
    host = value.strip().lower().rstrip(".")
    if any(c in host for c in "/: \t"):
        raise ValueError(f"{option} must be a host name such as llm-cache.local (empty: none); got {value!r}")
    return host


def parse_networks(option: str, values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs (10.0.0.0/8, fd00::/8) or single addresses."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{option}: {value!r} is not a network such as 10.0.0.0/8 or an address "
                             "such as 192.168.1.7") from None
    return tuple(networks)


# -- the semantic and synthesis tiers (llm_cache.tier_settings) --

def parse_semantic(options: Mapping[str, Any]) -> Semantic | None:
    if not options["semantic"]:
        return None
    return Semantic(
        embedder=embedders.parse(options["semantic_embedder"]),
        model=options["semantic_embedding_model"].strip(),
        threshold=parse_cosine("llm_cache_semantic_threshold", options["semantic_threshold"]),
        guard=parse_enum(Guard, "llm_cache_semantic_guard", options["semantic_guard"]),
        tool_results=options["semantic_tool_results"],
        block_after=parse_non_negative("llm_cache_semantic_block_after", options["semantic_block_after"]),
    )


def parse_synthesis(options: Mapping[str, Any], semantic: Semantic | None) -> Synthesis | None:
    if not options["synthesis"]:
        return None
    if semantic is None:
        raise ValueError("llm_cache_synthesis needs llm_cache_semantic: it answers from the semantic tier's neighbours")
    url, model = options["synthesis_url"].strip(), options["synthesis_model"].strip()
    if not url.startswith(("http://", "https://")) or not model:
        raise ValueError("llm_cache_synthesis needs llm_cache_synthesis_url (an OpenAI-compatible "
                         "/v1/chat/completions URL) and llm_cache_synthesis_model")
    top_k = options["synthesis_top_k"]
    if not 1 <= top_k <= 20:
        raise ValueError(f"llm_cache_synthesis_top_k must be 1 to 20; got {top_k}")
    return Synthesis(url=url, model=model, top_k=top_k,
                     threshold=parse_cosine("llm_cache_synthesis_threshold", options["synthesis_threshold"]))


def parse_cosine(option: str, value: str) -> float:
    """A similarity between 0 and 1, written as text ("0.85": mitmproxy's --set cannot parse floats)."""
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{option} must be a number from 0 to 1, such as 0.85; got {value!r}")
    return number
