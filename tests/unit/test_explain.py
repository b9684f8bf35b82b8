"""Near misses: what differs between a new request and the stored one closest to it, and the rule
that would have made it a hit (llm_cache.explain)."""

import re

import pytest
from ruamel.yaml import YAML

from llm_cache import explain, profiles
from llm_cache.endpoints import Family
from llm_cache.normalise import KeyRules, canonical_form

BILLING = "x-anthropic-billing-header: cc_version=2.1.332.1c9; cc_entrypoint=sdk-cli; cch={}; cc_prompt_id={};"


def claude(cch, prompt_id, previous="msg_1"):
    return {"model": "claude-opus-5-5", "system": [{"type": "text", "text": BILLING.format(cch, prompt_id)}],
            "diagnostics": {"previous_message_id": previous},
            "messages": [{"role": "user", "content": "say hello"}]}


@pytest.mark.parametrize(("stored", "new", "patterns"), [
    (BILLING.format("b9796", "e0c5b39f-3234-428d-8ff4-52dc7331d320"),
     BILLING.format("ffe67", "3d1182d0-1111-4aaa-9bbb-cccccccccccc"),
     ["(?<=cch=)[0-9a-f]+", "(?<=cc_prompt_id=)[0-9a-f-]+"]),
    ("Output: ok\nProcess Group PGID: 13977", "Output: ok\nProcess Group PGID: 14517", ["(?<=PGID: )[0-9]+"]),
    ("Chunk ID: d6458a\nWall time: 0.0000 seconds", "Chunk ID: e1c701\nWall time: 0.0012 seconds",
     ["(?<=ID: )[0-9a-f]+", r"(?<=time: )[0-9\.]+"]),
    ('{"chunk_id":"b49808","x":1}', '{"chunk_id":"a1c2d3","x":1}', ['(?<=chunk_id":")[0-9a-f]+']),
])
def test_a_changed_token_gets_a_pattern_named_by_the_text_before_it(stored, new, patterns):
    rules = explain.rules_for(stored, new, "messages[3].content[0].text")
    assert [(r.kind, r.at) for r in rules] == [("volatile", "messages[*].content[*].text")] * len(patterns)
    assert [r.pattern for r in rules] == patterns
    for text in (stored, new):  # each pattern matches where the token is
        assert all(re.search(pattern, text) for pattern in patterns)


@pytest.mark.parametrize(("stored", "new"), [
    ("msg_36", "msg_50"),  # a whole value with nothing naming it
    ("hello world", "hello there world"),  # words added: not a volatile token
    (1.5, 2),
    ("a, b", "a; b"),  # punctuation
])
def test_other_changes_suggest_leaving_the_field_out(stored, new):
    assert explain.rules_for(stored, new, "diagnostics.previous_message_id") == [
        explain.Rule("ignore", "diagnostics.previous_message_id")]


def test_a_near_miss_names_its_neighbour_the_paths_and_the_changed_text():
    new = claude("ffe67", "3d1182d0-1111", previous="msg_50")
    candidates = [("a" * 64, claude("b9796", "e0c5b39f-3234", previous="msg_36")),
                  ("b" * 64, {"model": "claude-opus-5-5", "messages": []})]
    miss = explain.near_miss("c" * 64, new, candidates, profile="", user_agent="claude-cli/2.1.332 (external, cli)")
    assert miss is not None and miss.neighbour == "a" * 64 and miss.differing == 2
    assert [d.path for d in miss.differences] == ["diagnostics.previous_message_id", "system[0].text"]
    text = miss.describe()
    assert text.startswith(f"near miss: {'c' * 12} differs from {'a' * 12} at diagnostics.previous_message_id: ")
    assert "cc_prompt_id=e0c5b39f-3234;" in text and "cc_prompt_id=3d1182d0-1111;" in text
    assert explain.near_miss("c" * 64, new, [("c" * 64, new)]) is None  # itself, or nothing that differs


def test_the_suggestion_is_config_yaml_that_makes_the_two_requests_one_key():
    stored, new = claude("b9796", "e0c5b39f-3234", "msg_36"), claude("ffe67", "3d1182d0-1111", "msg_50")
    miss = explain.near_miss("c" * 64, new, [("a" * 64, stored)], user_agent="claude-cli/2.1.332 (external, cli)")
    text = explain.suggestion(miss, stored, new)
    config = YAML(typ="safe").load(text)
    loaded = profiles.load(config["llm_cache_profiles"])
    assert loaded.recognise("anthropic.messages", {"user-agent": "claude-cli/2.1.332 (external, cli)"}) == "claude-cli"
    rules = KeyRules(profiles=loaded)

    def form(body):
        return canonical_form(body, rules, family=Family.ANTHROPIC_MESSAGES, profile="claude-cli")

    assert form(stored) == form(new)
    assert form(stored) != form({**stored, "messages": [{"role": "user", "content": "say goodbye"}]})
    extended = explain.suggestion(miss._replace(profile="claude-code"), stored, new)
    assert "extends: claude-code" in extended and "match" not in extended
