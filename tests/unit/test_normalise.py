"""Agent-proof keys: volatile parts of agents' requests do not change the key, and nothing else is
ever taken for volatile (a wrong hit answers one request with another's answer)."""

import math
import re

import pytest

from llm_cache import keys, profiles
from llm_cache.endpoints import Family, Route, Wire
from llm_cache.normalise import KeyRules, canonical_form
from llm_cache.policy import parse_paths

RULES = KeyRules()
AGENTS = KeyRules(profiles=profiles.load())
GEMINI = Route(Family.GEMINI_GENERATE, "gemini-2.5-pro", True, Wire.SSE)
CHAT = Route(Family.OPENAI_CHAT)


def digest(body, rules=RULES, route=CHAT, profile=""):
    facts = keys.body_facts(route, body, rules, profile=profile)
    assert facts is not None
    return facts.digest


def chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_identity_fields_are_ignored_by_default():
    plain = digest(chat())
    for field in ("metadata", "user", "prompt_cache_key", "safety_identifier", "store", "service_tier"):
        assert digest(chat(**{field: "volatile-123"})) == plain, field
    assert digest(chat(temperature=0.5)) != plain


def test_configured_paths_are_ignored_and_the_callers_body_is_untouched():
    rules = KeyRules(ignored=RULES.ignored + parse_paths("x", ["extra.run_id", "messages[*].name"]))
    one = chat(extra={"run_id": "a", "keep": 1})
    two = chat(extra={"run_id": "b", "keep": 1})
    assert digest(one, rules) == digest(two, rules)
    assert digest(one, rules) != digest(chat(extra={"run_id": "a", "keep": 2}), rules)
    assert one["extra"]["run_id"] == "a"
    named = chat(messages=[{"role": "user", "content": "hi", "name": "run-1"}])
    assert digest(named, rules) == digest(chat(), rules) != digest(named)


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


# -- tool-call ids: renumbered where the protocol pairs them, nowhere else -------------------------

def chat_transcript(a, b, arguments='{"city": "Paris"}'):
    return {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": a, "type": "function", "function": {"name": "w", "arguments": arguments}},
            {"id": b, "type": "function", "function": {"name": "w", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": a, "content": "sunny"},
        {"role": "tool", "tool_call_id": b, "content": "rain"}]}


def anthropic_transcript(call_id, tool_input):
    return {"model": "m", "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "w", "input": tool_input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "ok"}]}]}


def responses_transcript(call_id, arguments):
    return {"model": "m", "input": [
        {"type": "message", "role": "user", "content": "go", "id": "msg_a1"},
        {"type": "function_call", "id": "fc_9", "call_id": call_id, "name": "w", "arguments": arguments},
        {"type": "function_call_output", "call_id": call_id, "output": "ok"}]}


def gemini_transcript(call_id, args):
    return {"contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"functionCall": {"id": call_id, "name": "w", "args": args}}]},
        {"role": "user", "parts": [{"functionResponse": {"id": call_id, "name": "w", "response": {"out": "ok"}}}]}]}


def test_tool_call_ids_are_renumbered_in_every_protocol():
    assert digest(chat_transcript("call_abc", "call_def")) == digest(chat_transcript("call_XYZ", "call_QRS"))
    swapped = chat_transcript("call_1111", "call_2222")
    swapped["messages"][2]["tool_call_id"], swapped["messages"][3]["tool_call_id"] = "call_2222", "call_1111"
    assert digest(swapped) != digest(chat_transcript("call_1111", "call_2222"))  # who answered what still counts
    anthropic = Route(Family.ANTHROPIC_MESSAGES)
    assert digest(anthropic_transcript("toolu_01A", {}), route=anthropic) == digest(
        anthropic_transcript("toolu_99Z", {}), route=anthropic)
    form = canonical_form(anthropic_transcript("toolu_01A", {}), family=Family.ANTHROPIC_MESSAGES)
    assert form["messages"][1]["content"][0]["id"] == form["messages"][2]["content"][0]["tool_use_id"] == "<id:1>"
    responses = Route(Family.OPENAI_RESPONSES)
    assert digest(responses_transcript("call_1", "{}"), route=responses) == digest(
        responses_transcript("call_2", "{}"), route=responses)
    assert digest(gemini_transcript("run_shell_command_1764582000000_0", {}), route=GEMINI) == digest(
        gemini_transcript("run_shell_command_1764585600000_0", {}), route=GEMINI)
    ollama = Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON)
    assert digest(chat_transcript("a1", "a2"), route=ollama) == digest(chat_transcript("b1", "b2"), route=ollama)


@pytest.mark.parametrize(("route", "make", "one", "two"), [
    (Route(Family.OPENAI_CHAT), lambda v: chat_transcript("call_1", "call_2", f'{{"call_id": "{v}"}}'),
     "555-0100", "555-0199"),
    (Route(Family.ANTHROPIC_MESSAGES), lambda v: anthropic_transcript("toolu_1", {"club": {"id": v}}),
     "fc_barcelona", "fc_bayern"),
    (Route(Family.ANTHROPIC_MESSAGES), lambda v: anthropic_transcript("toolu_1", {"tool_use_id": v}),
     "TICKET-1", "TICKET-2"),
    (Route(Family.OPENAI_RESPONSES), lambda v: responses_transcript("call_1", f'{{"call_id": "{v}"}}'),
     "call_abcd1", "call_abcd2"),
    (GEMINI, lambda v: gemini_transcript("c1", {"call_id": v}), "call_abc123", "call_def456"),
    (Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON), lambda v: {"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"function": {"name": "route", "arguments": {"id": v}}}]}]},
     "call_center_1", "call_center_2"),
    (Route(Family.OPENAI_CHAT), lambda v: chat(messages=[{"role": "user", "content": v}]),
     "call_abcdef", "call_ghijkl"),
    (Route(Family.OPENAI_CHAT), lambda v: chat(tools=[{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"id": {"const": v}}}}}]), "toolu_1", "toolu_2"),
])
def test_ids_inside_arguments_inputs_schemas_and_text_are_data(route, make, one, two):
    assert digest(make(one), route=route) != digest(make(two), route=route)


def test_schemas_with_properties_named_type_id_or_call_id_are_ordinary_input():
    # The Codex CLI's tools: a property named `type` made the old key function raise.
    schema = {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"},
                                               "call_id": {"type": "string"}}}
    body = {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": schema}]}
    for family in Family:
        form = canonical_form(body, family=family)
        assert form["tools"][0]["parameters"] == schema


# -- values JSON does not have ------------------------------------------------------------------

def test_nan_infinities_and_null_are_four_different_values():
    bodies = [chat(temperature=value) for value in (math.nan, math.inf, -math.inf, None)]
    assert len({digest(body) for body in bodies}) == 4
    assert keys.canonical_body(chat(temperature=math.nan)).count(b"NaN") == 1
    parsed = keys.parse_json(b'{"model": "m", "messages": [], "temperature": NaN}')
    assert digest(parsed) == digest(chat(messages=[], temperature=math.nan))


def test_too_deep_bodies_are_refused_clearly():
    body = chat()
    inner = body
    for _ in range(300):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(ValueError, match="nested deeper"):
        keys.body_facts(Route(Family.OPENAI_CHAT), body)


# -- agent profiles -----------------------------------------------------------------------------

BILLING = ("x-anthropic-billing-header: cc_version=2.1.332.1f2; cc_entrypoint=cli; cch={cch}; "
           "cc_prompt_id={prompt};")


def claude_code(cch="0a1b2", prompt="6f1c1e0e-3a6f-4b8e-9d1e-1d2c3b4a5f60", user_text="hi"):
    return {"model": "claude-sonnet-4-5", "system": [
        {"type": "text", "text": BILLING.format(cch=cch, prompt=prompt)},
        {"type": "text", "text": "You are Claude Code."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": user_text}]}]}


def claude_digest(body, rules=AGENTS):
    return digest(body, rules, Route(Family.ANTHROPIC_MESSAGES), profile="claude-code")


def test_claude_codes_billing_block_is_normalised_only_in_its_own_system_block():
    assert claude_digest(claude_code()) == claude_digest(claude_code(cch="ff93c", prompt="0" * 8 + "-1111"))
    assert claude_digest(claude_code()) != digest(claude_code(), AGENTS, Route(Family.ANTHROPIC_MESSAGES))
    quoted = BILLING.format(cch="aaaaa", prompt="p1")
    assert claude_digest(claude_code(user_text=quoted)) != claude_digest(
        claude_code(user_text=quoted.replace("aaaaa", "bbbbb")))  # the user's text is data
    other = claude_code()
    other["system"][1]["text"] = "My notes: " + BILLING.format(cch="1", prompt="2")
    changed = claude_code()
    changed["system"][1]["text"] = "My notes: " + BILLING.format(cch="3", prompt="4")
    assert claude_digest(other) != claude_digest(changed)  # only a block that starts with the header


def test_profiles_are_recognised_from_the_request_headers():
    known = profiles.load()
    assert known.recognise("anthropic.messages", {"user-agent": "claude-cli/2.1.332 (external, cli)"}) == "claude-code"
    assert known.recognise("openai.chat", {"user-agent": "claude-cli/2.1.332 (external, cli)"}) == ""
    assert known.recognise("anthropic.messages", {"user-agent": "Anthropic/Python 2.12.0"}) == ""


def test_a_user_profile_extends_or_replaces_a_built_in_one():
    text = """
my-agent:
  match: {user_agent: ["my-agent/*"], headers: {x-team: "blue*"}}
  ignore: ["messages[*].name"]
  volatile:
    - {at: "messages[*].content", pattern: 'run [0-9]+', replace: "run <n>"}
claude-code:
  extends: claude-code
  volatile:
    - {at: "messages[*].content[*].text", pattern: 'ticket [A-Z]+-[0-9]+'}
"""
    loaded = profiles.load(text)
    assert loaded.names()[:2] == ["my-agent", "claude-code"] and "codex" in loaded.names()
    assert loaded.recognise("openai.chat", {"user-agent": "My-Agent/1.0", "x-team": "blue-7"}) == "my-agent"
    assert loaded.recognise("openai.chat", {"user-agent": "My-Agent/1.0", "x-team": "red"}) == ""
    rules = KeyRules(profiles=loaded)

    def mine(n, name):
        body = chat(messages=[{"role": "user", "content": f"run {n} now", "name": name}])
        return digest(body, rules, profile="my-agent")

    assert mine(1, "a") == mine(2, "b") != mine(1, "a").replace("0", "1")
    assert claude_digest(claude_code(user_text="ticket AB-1"), rules) == claude_digest(
        claude_code(user_text="ticket CD-2", cch="999"), rules)  # its own rule, and the built-in ones
    assert claude_digest(claude_code(user_text="ticket AB-1")) != claude_digest(claude_code(user_text="ticket CD-2"))


def test_values_a_request_states_are_replaced_wherever_they_appear_when_portable():
    text = """
tool:
  match: {user_agent: ["tool/*"]}
  values:
    - {at: "messages[0].content", pattern: 'cwd: (\\S+)', name: cwd}
  portable:
    - {at: "messages[0].content", pattern: '(?<=date: )[0-9-]+', replace: "<date>"}
"""
    loaded = profiles.load(text)

    def run(cwd, day, rules):
        body = chat(messages=[{"role": "user", "content": f"cwd: {cwd} date: {day}"},
                              {"role": "user", "content": f"wrote {cwd}/out.txt"}])
        return digest(body, rules, profile="tool")

    portable, keyed = KeyRules(profiles=loaded), KeyRules(profiles=loaded, portable=False)
    assert run("/home/a/proj", "2026-12-01", portable) == run("/srv/ci/proj", "2026-12-02", portable)
    assert run("/home/a/proj", "2026-12-01", keyed) != run("/srv/ci/proj", "2026-12-01", keyed)
    assert run("/home/a/proj", "2026-12-01", keyed) != run("/home/a/proj", "2026-12-02", keyed)
    form = canonical_form(chat(messages=[{"role": "user", "content": "cwd: /home/a/proj"},
                                         {"role": "user", "content": "see /home/a/proj/x and /home/a/other"}]),
                          KeyRules(profiles=loaded), profile="tool")
    assert form["messages"][1]["content"] == "see <cwd>/x and /home/a/other"
    short = canonical_form(chat(messages=[{"role": "user", "content": "cwd: / and /etc"}]),
                           KeyRules(profiles=loaded), profile="tool")
    assert short["messages"][0]["content"] == "cwd: / and /etc"  # "/" is too short to stand for a place


def test_user_normalisers_apply_to_text():
    rules = KeyRules(normalisers=(re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z?"), re.compile(r"/tmp/[\w.-]+")))
    one = chat(messages=[{"role": "user", "content": "at 2026-11-22T10:00:01Z in /tmp/run-abc"}])
    two = chat(messages=[{"role": "user", "content": "at 2026-11-23T09:59:59Z in /tmp/run-xyz"}])
    assert digest(one, rules) == digest(two, rules) and digest(one) != digest(two)


def test_lists_and_text_blocks_an_agent_sends_in_varying_order_are_sorted():
    loaded = profiles.load()
    skill = "  <skill>\n    <name>{0}</name>\n    <location>/x/{0}/SKILL.md</location>\n  </skill>\n"

    def gemini_cli(first, second):
        prompt = f"Skills:\n<available_skills>\n{skill.format(first)}{skill.format(second)}</available_skills>\nEnd."
        return {"systemInstruction": {"parts": [{"text": prompt}]}, "contents": [
            {"role": "user", "parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": [
                {"name": "activate_skill", "parametersJsonSchema": {"type": "object", "properties": {
                    "name": {"type": "string", "enum": [first, second]}}}}]}]}

    rules = KeyRules(profiles=loaded)
    one = digest(gemini_cli("skill-creator", "antigravity-support"), rules, GEMINI, profile="gemini-cli")
    assert one == digest(gemini_cli("antigravity-support", "skill-creator"), rules, GEMINI, profile="gemini-cli")
    assert one != digest(gemini_cli("skill-creator", "other-skill"), rules, GEMINI, profile="gemini-cli")
    assert digest(gemini_cli("skill-creator", "antigravity-support"), rules, GEMINI) != digest(
        gemini_cli("antigravity-support", "skill-creator"), rules, GEMINI)  # other clients: order is data
    form = canonical_form(gemini_cli("b-skill", "a-skill"), rules, family=Family.GEMINI_GENERATE, profile="gemini-cli")
    text = form["systemInstruction"]["parts"][0]["text"]
    assert text.index("a-skill") < text.index("b-skill") and text.startswith("Skills:\n<available_skills>\n  <skill>")
    assert text.endswith("</skill>\n</available_skills>\nEnd.")
