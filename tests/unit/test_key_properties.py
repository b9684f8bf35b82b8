"""Properties of keys, for every protocol and every agent profile (hypothesis):

- the key function never raises on JSON, whatever its shape;
- two requests that differ in one value that is not volatile by design get different keys (a
  wrong hit would answer one with the other's recorded answer).

Volatile by design: transport and identity fields, and tool-call ids where the protocol pairs a call
with its result. Everything else, ids inside arguments, schemas and text included, is data.
"""

import copy
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_cache import keys, profiles
from llm_cache.endpoints import Family, Route, Wire
from llm_cache.normalise import DEFAULT_IGNORED_FIELDS, TRANSPORT_FIELDS, KeyRules

RULES = KeyRules(profiles=profiles.load())
PROFILES = ["", *RULES.profiles.names()]
ROUTES = [Route(Family.OPENAI_CHAT), Route(Family.OPENAI_COMPLETIONS), Route(Family.OPENAI_RESPONSES),
          Route(Family.OPENAI_EMBEDDINGS), Route(Family.ANTHROPIC_MESSAGES),
          Route(Family.GEMINI_GENERATE, "gemini-2.5-pro", True, Wire.SSE), Route(Family.GEMINI_GENERATE, None, False),
          Route(Family.GEMINI_EMBED, "text-embedding-004", False), Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON),
          Route(Family.OLLAMA_GENERATE, stream_wire=Wire.NDJSON), Route(Family.OLLAMA_EMBED, stream_wire=Wire.NDJSON)]

# Keys that look like ids or types: the places an over-eager normaliser would reach.
NAMES = st.sampled_from(["id", "type", "call_id", "tool_use_id", "tool_call_id", "name", "text", "content",
                         "arguments", "input", "args", "role", "properties", "x"]) | st.text(max_size=6)
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from(["call_abc123", "toolu_01A", "fc_barcelona", "555-0100", "<id:1>", "cch=abc",
                             "Today's date is 2026-12-01.", "x-anthropic-billing-header: cch=1;"])
           | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
                    max_leaves=20)


def body_of(route: Route, value: Any, text: str) -> dict[str, Any]:
    """A request of this route's protocol with fuzzed data where agents put their own: tool
    arguments and inputs, schemas, text; tool-call ids paired as the protocol pairs them."""
    family = route.family
    schema = {"type": "object", "properties": {"type": {"type": "string"}, "id": value}}
    if family in (Family.OPENAI_CHAT, Family.OLLAMA_CHAT):
        return {"model": "m", "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
                "messages": [{"role": "system", "content": text}, {"role": "user", "content": [{"type": "text",
                                                                                               "text": text}]},
                             {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                                 "name": "f", "arguments": {"v": value}}}]},
                             {"role": "tool", "tool_call_id": "call_1", "content": text, "extra": value}]}
    if family is Family.ANTHROPIC_MESSAGES:
        return {"model": "m", "system": [{"type": "text", "text": text}],
                "tools": [{"name": "f", "input_schema": schema}],
                "messages": [{"role": "user", "content": text},
                             {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f",
                                                                "input": {"v": value}}]},
                             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                           "content": [{"type": "text", "text": text}],
                                                           "extra": value}]}]}
    if family is Family.OPENAI_RESPONSES:
        return {"model": "m", "instructions": text, "tools": [{"type": "function", "name": "f", "parameters": schema}],
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
                          {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": text,
                           "extra": value},
                          {"type": "function_call_output", "call_id": "call_1", "output": text}]}
    if family is Family.GEMINI_GENERATE:
        inner = {"systemInstruction": {"parts": [{"text": text}]},
                 "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}],
                 "contents": [{"role": "user", "parts": [{"text": text}]},
                              {"role": "model", "parts": [{"functionCall": {"id": "f_1", "name": "f",
                                                                            "args": {"v": value}}}]},
                              {"role": "user", "parts": [{"functionResponse": {"id": "f_1", "name": "f",
                                                                               "response": {"out": value}}}]}]}
        return {"model": "m", "project": "p", "request": inner} if route.model is None else inner
    if family is Family.GEMINI_EMBED:
        return {"content": {"parts": [{"text": text}]}, "extra": value}
    if family in (Family.OLLAMA_EMBED, Family.OPENAI_EMBEDDINGS):
        return {"model": "m", "input": [text], "extra": value}
    return {"model": "m", "prompt": text, "suffix": value}


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, path + (i,))]
    return [path]


def volatile_by_design(path: tuple) -> bool:
    """Transport and identity fields, and tool-call ids exactly where the protocol pairs them."""
    if path[0] in TRANSPORT_FIELDS or any(path[:len(p)] == tuple(s.value for s in p) for p in DEFAULT_IGNORED_FIELDS):
        return True
    shape = tuple("#" if isinstance(step, int) else step for step in path)
    inner = shape[1:] if shape[:1] == ("request",) else shape  # the Gemini CLI's envelope
    return shape in PAIRED or inner in PAIRED


PAIRED = {("messages", "#", "tool_calls", "#", "id"), ("messages", "#", "tool_call_id"),  # chat, Ollama
          ("messages", "#", "content", "#", "id"), ("messages", "#", "content", "#", "tool_use_id"),  # Anthropic
          ("input", "#", "id"), ("input", "#", "call_id"),  # Responses
          ("contents", "#", "parts", "#", "functionCall", "id"),  # Gemini
          ("contents", "#", "parts", "#", "functionResponse", "id")}


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, as a key sees them (1 and 1.0 are one number; NaN is NaN)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        both_exact = all(not isinstance(x, float) or (math.isfinite(x) and abs(x) < 2**53) for x in (a, b))
        return a == b if both_exact else (type(a) is type(b) and a == b)
    return type(a) is type(b) and a == b


def digest(route: Route, body: dict[str, Any], profile: str) -> str | None:
    """None: not a call of this route after all, so never answered from the cache."""
    facts = keys.body_facts(route, body, RULES, profile=profile)
    return facts.digest if facts is not None else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), profile=st.sampled_from(PROFILES), body=JSON, value=JSON)
def test_the_key_function_never_raises_on_json(route, profile, body, value):
    for candidate in (body, {"model": "m", "messages": body, "input": body, "contents": body, "system": body},
                      body_of(route, value, str(body)[:40])):
        keys.body_facts(route, candidate, RULES, profile=profile)  # facts or None, never an exception


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.family}{'' if r.model else '-envelope'}")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=st.sampled_from(PROFILES), value=JSON, text=st.text(max_size=30), data=st.data())
def test_one_changed_value_that_is_not_volatile_changes_the_key(route, profile, value, text, data):
    body = body_of(route, value, text)
    before = digest(route, body, profile)
    assert before is not None
    for path in leaves(body):  # each value in turn, alone
        if volatile_by_design(path):
            continue
        changed = copy.deepcopy(body)
        parent: Any = changed
        for step in path[:-1]:
            parent = parent[step]
        old = parent[path[-1]]
        parent[path[-1]] = new = data.draw(SCALARS.filter(lambda v, old=old: not same(v, old)))
        assert before != digest(route, changed, profile), (path, old, new)
