"""Agent-proof keys: the volatile parts of an agent's request, taken out of what its key digests.

An exact cache misses on real agents: the ids a model made up for its tool calls differ on every
run, agents stamp requests with session ids and prompt ids, and prompts quote the date, the working
directory and tool timings. `canonicalise` builds the body a key digests, in this order:

1. transport fields (`stream`), control fields (`"cache": false`) and ignored fields dropped;
2. integral floats written as ints (`1.0` is `1`); NaN, Infinity and -Infinity kept apart from
   each other and from null;
3. tool-call ids renumbered where the protocol pairs a call with its result (llm_cache.references);
4. the agent's profile applied, if the request came from a known agent (llm_cache.profiles): its
   volatile fields and text, and with `llm_cache_portable` its dates and paths;
5. the user's own `llm_cache_normalise` patterns, in every string.

Nothing else is touched: an id inside a tool's arguments, a schema or the user's text is data. The
stored request keeps what was actually sent.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from llm_cache import paths, references
from llm_cache.endpoints import Family
from llm_cache.profiles import NO_PROFILES, Profiles

# Body fields that say how the answer is delivered (or, for Ollama's keep_alive, how long the model
# stays loaded afterwards); a JSON request and a stream share a key.
TRANSPORT_FIELDS = frozenset({"stream", "stream_options", "keep_alive"})

# Who asks and how the provider bills or retains it, not what is asked. Code Assist's envelope (the
# Gemini CLI's /v1internal) numbers each prompt and session.
DEFAULT_IGNORED_FIELDS: tuple[paths.Path, ...] = tuple(
    paths.parse(name) for name in ("metadata", "user", "prompt_cache_key", "safety_identifier", "store",
                                   "service_tier", "user_prompt_id", "request.session_id")
)

MAX_DEPTH = 256  # deeper bodies are not LLM calls anyone sends; they pass through uncached


@dataclass(frozen=True)
class KeyRules:
    ignored: tuple[paths.Path, ...] = DEFAULT_IGNORED_FIELDS
    normalisers: tuple[Any, ...] = ()  # compiled user regexes; each match becomes "<norm>"
    profiles: Profiles = field(default_factory=lambda: NO_PROFILES)
    portable: bool = True  # apply the profiles' date and path rules


DEFAULT_RULES = KeyRules()


class NonFinite(float):
    """NaN, Infinity or -Infinity in a canonical body: JSON has no such values, and orjson would
    write each as null, so they are written apart (llm_cache.keys.canonical_json)."""


def canonical_form(body: dict[str, Any], rules: KeyRules = DEFAULT_RULES, *, family: Family | None = None,
                   profile: str = "") -> dict[str, Any]:
    """A request body as its key sees it (see the module's docstring). Raises ValueError for a
    body nested deeper than MAX_DEPTH."""
    kept = {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS and not is_control_field(k, v)}
    form = _copy(kept, 0)
    for path in rules.ignored:
        paths.remove(form, path)
    references.renumber(form, family)
    chosen = rules.profiles.get(profile)
    if chosen is not None:
        form = chosen.apply(form, portable=rules.portable)
    if rules.normalisers:
        patterns = rules.normalisers
        form = paths.map_all(form, lambda text: _normalised(text, patterns))
    return form


def is_control_field(name: str, value: Any) -> bool:
    """Body fields other caches read as "don't cache this": `"cache": false` and a top-level
    `"cache_control": {"enabled": false}` (not Anthropic's blocks, which live inside messages)."""
    if name == "cache":
        return isinstance(value, bool)
    return name == "cache_control" and isinstance(value, dict) and "enabled" in value


def _copy(value: Any, depth: int) -> Any:
    """A deep copy, with integral floats as ints and non-finite floats marked."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the body is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {k: _copy(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, depth + 1) for v in value]
    if isinstance(value, float):
        if not math.isfinite(value):
            return NonFinite(value)
        if value.is_integer() and abs(value) < 2**53:  # beyond 2**53 a float is no exact int anyway
            return int(value)
    return value


def _normalised(text: str, patterns: tuple[Any, ...]) -> str:
    for pattern in patterns:
        text = pattern.sub("<norm>", text)
    return text
