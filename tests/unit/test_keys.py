import hashlib

import orjson
import pytest

from llm_cache import keys
from llm_cache.endpoints import Family, Route

CHAT = {"model": "gpt-4o-mini", "temperature": 0.2, "messages": [{"role": "user", "content": "Hi"}]}
OPENAI = ("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (), ())


def key_of(body, target=OPENAI, family=Family.OPENAI_CHAT):
    facts = keys.body_facts(Route(family), body)
    assert facts is not None
    return keys.cache_key(keys.make_target(*target), facts.digest)


def test_golden_key_pins_the_scheme():
    # If this changes, every stored entry stops matching: bump KEY_SCHEME on purpose, then update.
    assert keys.KEY_SCHEME == "llm-cache/2"
    assert key_of(CHAT) == "20697988d0e104dd7c3832b530b762a16bf692ecc425411c9ebe44d6f8c7633e"
    # ... which is the scheme the README documents, spelled out by hand:
    body = b'{"messages":[{"content":"Hi","role":"user"}],"model":"gpt-4o-mini","temperature":0.2}'
    prefix = b'["llm-cache/2","POST","https","api.openai.com",443,"/v1/chat/completions",[],[]]'
    digest = hashlib.sha256(body).hexdigest().encode()
    assert key_of(CHAT) == hashlib.sha256(prefix + b"\n" + digest).hexdigest()


@pytest.mark.parametrize(
    "variant",
    [
        {"messages": [{"content": "Hi", "role": "user"}], "temperature": 0.2, "model": "gpt-4o-mini"},  # key order
        {**CHAT, "stream": True},
        {**CHAT, "stream": False},
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ],
    ids=["reordered", "stream-true", "stream-false", "stream-options"],
)
def test_equivalent_bodies_share_a_key(variant):
    assert key_of(variant) == key_of(CHAT)


def test_integral_floats_equal_ints():
    assert key_of({**CHAT, "temperature": 1}) == key_of({**CHAT, "temperature": 1.0})
    assert key_of({**CHAT, "max_tokens": 100}) == key_of({**CHAT, "max_tokens": 100.0})
    assert key_of({**CHAT, "temperature": 1}) != key_of({**CHAT, "temperature": 1.5})


@pytest.mark.parametrize(
    "variant",
    [
        {**CHAT, "model": "gpt-4o"},
        {**CHAT, "messages": [{"role": "user", "content": "Hi!"}]},
        {**CHAT, "messages": [{"role": "system", "content": "Hi"}]},
        {**CHAT, "temperature": 0.3},
        {**CHAT, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {**CHAT, "max_tokens": 10},
        {**CHAT, "n": 2},
    ],
    ids=["model", "message", "role", "temperature", "tools", "max_tokens", "n"],
)
def test_meaningful_changes_change_the_key(variant):
    assert key_of(variant) != key_of(CHAT)


@pytest.mark.parametrize(
    "target",
    [
        ("POST", "https", "api.groq.com", 443, "/v1/chat/completions", (), ()),
        ("POST", "https", "api.openai.com", 8443, "/v1/chat/completions", (), ()),
        ("POST", "http", "api.openai.com", 443, "/v1/chat/completions", (), ()),
        ("POST", "https", "api.openai.com", 443, "/api/v1/chat/completions", (), ()),
        ("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (("api-version", "2024-10-21"),), ()),
        ("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (), (("OpenAI-Beta", "assistants=v2"),)),
    ],
    ids=["host", "port", "scheme", "path", "query", "openai-beta"],
)
def test_where_the_request_goes_is_part_of_the_key(target):
    assert key_of(CHAT, target) != key_of(CHAT)


@pytest.mark.parametrize(
    "headers",
    [
        (("Authorization", "Bearer sk-one"),),
        (("Authorization", "Bearer sk-two"), ("x-api-key", "k"), ("api-key", "a"), ("x-goog-api-key", "g")),
        (("User-Agent", "OpenAI/Python 9.9"), ("X-Stainless-Retry-Count", "1"), ("Accept-Encoding", "gzip")),
    ],
    ids=["bearer", "every-credential-header", "client-noise"],
)
def test_credentials_and_client_noise_are_not_part_of_the_key(headers):
    target = ("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (), headers)
    assert key_of(CHAT, target) == key_of(CHAT)


def test_credential_query_parameters_are_dropped():
    with_key = ("POST", "https", "api.openai.com", 443, "/v1/chat/completions", (("key", "AIza-secret"),), ())
    assert key_of(CHAT, with_key) == key_of(CHAT)
    assert "AIza" not in keys.make_target(*with_key).url


def test_anthropic_beta_flags_are_a_set_and_version_matters():
    def anthropic(*headers):
        return ("POST", "https", "api.anthropic.com", 443, "/v1/messages", (("beta", "true"),), headers)

    def key(*headers):
        body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
        return key_of(body, anthropic(*headers), Family.ANTHROPIC_MESSAGES)

    a = key(("anthropic-beta", "b1,b2"), ("anthropic-version", "2023-06-01"))
    b = key(("anthropic-version", "2023-06-01"), ("Anthropic-Beta", "b2, b1"))
    c = key(("anthropic-version", "2024-01-01"), ("anthropic-beta", "b1,b2"))
    assert a == b != c


def test_host_case_and_trailing_dot_do_not_matter():
    upper = ("POST", "HTTPS", "API.OpenAI.com.", 443, "/v1/chat/completions", (), ())
    assert key_of(CHAT, upper) == key_of(CHAT)


def test_facts_say_how_to_answer():
    streaming = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    facts = keys.body_facts(Route(Family.OPENAI_CHAT), streaming)
    assert facts is not None
    assert (facts.model, facts.stream, facts.include_usage) == ("gpt-4o-mini", True, True)
    assert keys.body_facts(Route(Family.OPENAI_CHAT), {"model": "m"}) is None


def test_memo_keeps_bodies_within_its_byte_budget():
    memo = keys.BodyMemo(max_bytes=8_000)
    route = Route(Family.OPENAI_CHAT)
    bodies = [orjson.dumps({**CHAT, "messages": [{"role": "user", "content": f"{n} " + "x" * 900}]})
              for n in range(12)]
    for body in bodies:
        memo.facts(route, body)
    assert memo._bytes == sum(len(raw) for _, _, raw in memo._facts) <= 8_000
    assert (route, "", bodies[-1]) in memo._facts and (route, "", bodies[0]) not in memo._facts  # the oldest went
    huge = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "y" * 2_000}]})
    assert memo.facts(route, huge) is not None
    assert (route, "", huge) not in memo._facts  # over an eighth of the budget: computed, not kept
    # Equal bytes in another object are the same body.
    assert memo.facts(route, bytes(bytearray(bodies[-1]))) is memo._facts[(route, "", bodies[-1])]


def test_large_integers_and_nested_floats_canonicalise():
    body = {"model": "m", "messages": [], "seed": 2**70, "logit_bias": {"5": 1.0}}
    assert keys.canonical_body(body) == b'{"logit_bias":{"5":1},"messages":[],"model":"m","seed":%d}' % 2**70


def test_memo_returns_the_same_facts_and_rejects_non_json():
    memo = keys.BodyMemo(size=2)
    raw = orjson.dumps(CHAT)
    first = memo.facts(Route(Family.OPENAI_CHAT), raw)
    assert first == memo.facts(Route(Family.OPENAI_CHAT), raw) == keys.body_facts(Route(Family.OPENAI_CHAT), CHAT)
    assert memo.facts(Route(Family.OPENAI_EMBEDDINGS), raw) is None  # the family is part of the memo key
    with pytest.raises(ValueError):
        memo.facts(Route(Family.OPENAI_CHAT), b"not json")
