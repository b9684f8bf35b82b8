"""Agent-proof keys: the volatile parts of an agent's request, taken out of what its key digests.

An exact cache misses on real agents: the ids a model made up for its tool calls differ on every
run, Claude Code's billing line carries a per-request hash, SDKs attach user ids and metadata, and
prompts quote timestamps and temp paths. `canonical_form` removes or replaces all of these in one
walk over the parsed body; the stored request keeps what was actually sent.
"""

import re
from dataclasses import dataclass
from typing import Any

# Body fields that say how the answer is delivered (or, for Ollama's keep_alive, how long the model
# stays loaded afterwards); a JSON request and a stream share a key.
TRANSPORT_FIELDS = frozenset({"stream", "stream_options", "keep_alive"})

# Who asks and how the provider bills or retains it, not what is asked. The Gemini CLI numbers each
# prompt (user_prompt_id) and session (request.session_id).
DEFAULT_IGNORED_FIELDS: tuple[tuple[str, ...], ...] = tuple(
    (name,) for name in ("metadata", "user", "prompt_cache_key", "safety_identifier", "store", "service_tier",
                         "user_prompt_id")
) + (("request", "session_id"),)

# Keys whose string value is always a tool-call id, and id prefixes the providers generate.
_CALL_ID_KEYS = frozenset({"tool_call_id", "tool_use_id", "call_id"})
_TOOL_ITEM_TYPES = frozenset({"function", "tool_use", "server_tool_use", "function_call", "custom_tool_call"})
_GENERATED_ID = re.compile(r"(?:call|toolu|srvtoolu|fc|ctc)_[A-Za-z0-9_-]{4,}")

# Claude Code puts "x-anthropic-billing-header: cc_version=...; cch=<hex>;" in its system prompt;
# cch changes on every request.
_BILLING = re.compile(r"(x-anthropic-billing-header:[^\n]*?\bcch=)[0-9A-Za-z]+")

_SAFE_INT = 2**53  # floats beyond this are not exactly representable as ints anyway


@dataclass(frozen=True)
class KeyRules:
    ignored: tuple[tuple[str, ...], ...] = DEFAULT_IGNORED_FIELDS  # dotted paths, split
    normalisers: tuple[re.Pattern[str], ...] = ()  # user regexes; each match becomes "<norm>"


DEFAULT_RULES = KeyRules()


def canonical_form(body: dict[str, Any], rules: KeyRules = DEFAULT_RULES) -> dict[str, Any]:
    """A request body as its key sees it: transport, control and ignored fields dropped, integral
    floats as ints, tool-call ids numbered in order of appearance, volatile text normalised."""
    kept = {k: v for k, v in body.items() if k not in TRANSPORT_FIELDS and not is_control_field(k, v)}
    for path in rules.ignored:
        _drop(kept, path)
    return _Walk(rules.normalisers).value(kept)


def is_control_field(name: str, value: Any) -> bool:
    """Body fields other caches read as "don't cache this": `"cache": false` and a top-level
    `"cache_control": {"enabled": false}` (not Anthropic's blocks, which live inside messages)."""
    if name == "cache":
        return isinstance(value, bool)
    return name == "cache_control" and isinstance(value, dict) and "enabled" in value


def _drop(body: dict[str, Any], path: tuple[str, ...]) -> None:
    """Remove a dotted path; the parents it passes through are copied, never the caller's."""
    head, *rest = path
    if head not in body:
        return
    if not rest:
        del body[head]
    elif isinstance(body[head], dict):
        body[head] = dict(body[head])
        _drop(body[head], tuple(rest))


class _Walk:
    def __init__(self, normalisers: tuple[re.Pattern[str], ...]) -> None:
        self.normalisers = normalisers
        self.ids: dict[str, str] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self.mapping(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, float) and value.is_integer() and abs(value) < _SAFE_INT:
            return int(value)
        return value

    def mapping(self, value: dict[str, Any]) -> dict[str, Any]:
        out = {}
        is_tool_item = value.get("type") in _TOOL_ITEM_TYPES
        for k, v in value.items():
            is_id = isinstance(v, str) and (
                k in _CALL_ID_KEYS or (k == "id" and (is_tool_item or _GENERATED_ID.fullmatch(v) is not None))
            )
            if is_id:
                out[k] = self.ids.setdefault(v, f"<id:{len(self.ids) + 1}>")
            else:
                out[k] = self.value(v)
        return out

    def text(self, value: str) -> str:
        if "x-anthropic-billing-header" in value:
            value = _BILLING.sub(r"\1<cch>", value)
        for pattern in self.normalisers:
            value = pattern.sub("<norm>", value)
        return value
