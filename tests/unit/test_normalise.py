"""Agent-proof keys: volatile parts of agents' requests do not change the key."""

import re

from llm_cache import keys
from llm_cache.endpoints import Family, Route
from llm_cache.normalise import KeyRules, canonical_form
from llm_cache.policy import parse_paths

RULES = KeyRules()


def digest(body, rules=RULES):
    facts = keys.body_facts(Route(Family.OPENAI_CHAT), body, rules)
    assert facts is not None
    return facts.digest


def chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_identity_fields_are_ignored_by_default():
    plain = digest(chat())
    for field in ("metadata", "user", "prompt_cache_key", "safety_identifier", "store", "service_tier"):
        assert digest(chat(**{field: "volatile-123"})) == plain, field
    assert digest(chat(temperature=0.5)) != plain


def test_configured_nested_paths_are_ignored_and_the_callers_body_is_untouched():
    rules = KeyRules(ignored=RULES.ignored + parse_paths("x", ["extra.run_id"]))
    one = chat(extra={"run_id": "a", "keep": 1})
    two = chat(extra={"run_id": "b", "keep": 1})
    assert digest(one, rules) == digest(two, rules)
    assert digest(one, rules) != digest(chat(extra={"run_id": "a", "keep": 2}), rules)
    assert one["extra"]["run_id"] == "a"


def test_control_and_transport_fields_are_not_keyed():
    plain = digest(chat())
    assert digest(chat(cache=False)) == digest(chat(cache_control={"enabled": False})) == digest(chat(stream=True))
    assert digest(chat(cache=False)) == plain
    facts = keys.body_facts(Route(Family.OPENAI_CHAT), chat(cache=False))
    assert facts.bypass == '"cache": false' and facts.has_controls
    assert keys.without_controls(b'{"model":"m","cache":true,"cache_control":{"enabled":false},"x":1}') == \
        b'{"model":"m","x":1}'


def test_anthropic_cache_control_blocks_stay_in_the_key():
    block = {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    with_block = {"model": "m", "messages": [block]}
    without = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert digest(with_block) != digest(without)
    assert not keys.body_facts(Route(Family.ANTHROPIC_MESSAGES), with_block).has_controls


def test_claude_code_billing_hash_is_normalised():
    def system(cch):
        return {"model": "m", "messages": [], "system": [
            {"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.0.1; cc_entrypoint=cli; cch={cch};"}]}
    assert digest(system("0a1b2")) == digest(system("ff93c"))
    assert canonical_form(system("0a1b2"))["system"][0]["text"].endswith("cch=<cch>;")


def test_tool_call_ids_become_positional_placeholders():
    def transcript(a, b):
        return {"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": a, "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": b, "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": a, "content": "sunny"},
            {"role": "tool", "tool_call_id": b, "content": "rain"}]}
    assert digest(transcript("call_abc", "call_def")) == digest(transcript("call_XYZ", "call_QRS"))
    swapped = transcript("call_1111", "call_2222")
    swapped["messages"][2]["tool_call_id"], swapped["messages"][3]["tool_call_id"] = "call_2222", "call_1111"
    assert digest(swapped) != digest(transcript("call_1111", "call_2222"))  # who answered what still counts
    anthropic = {"model": "m", "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A", "name": "w", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "ok"}]}]}
    form = canonical_form(anthropic)
    assert form["messages"][0]["content"][0]["id"] == form["messages"][1]["content"][0]["tool_use_id"] == "<id:1>"


def test_user_normalisers_apply_to_text():
    rules = KeyRules(normalisers=(re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z?"), re.compile(r"/tmp/[\w.-]+")))
    one = chat(messages=[{"role": "user", "content": "at 2026-11-22T10:00:01Z in /tmp/run-abc"}])
    two = chat(messages=[{"role": "user", "content": "at 2026-11-23T09:59:59Z in /tmp/run-xyz"}])
    assert digest(one, rules) == digest(two, rules) and digest(one) != digest(two)
