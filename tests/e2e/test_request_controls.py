"""Per-request controls through a real mitmdump, sent the way users of other caches already send them."""

import time

import anthropic
import openai
import orjson
import pytest

from tests.e2e.control_helpers import chat, text


def test_cache_control_no_store_answers_but_does_not_record(client_env, prompt):
    headers, _ = chat(prompt, extra_headers={"Cache-Control": "no-store"})
    assert headers["x-llm-cache"] == "MISS" and headers["x-llm-cache-store"] == "skipped: Cache-Control: no-store"
    headers, _ = chat(prompt)
    assert (headers["x-llm-cache"], headers["x-llm-cache-store"]) == ("MISS", "stored")


def test_cache_control_no_cache_goes_upstream_and_overwrites(client_env, prompt):
    _, first = chat(prompt)
    headers, fresh = chat(prompt, extra_headers={"Cache-Control": "no-cache"})
    assert (headers["x-llm-cache"], headers["x-llm-cache-store"]) == ("MISS", "stored")
    headers, hit = chat(prompt)
    assert headers["x-llm-cache"] == "HIT" and text(hit) == text(fresh) != text(first)


def test_an_agent_reports_a_bad_answer_and_gets_a_new_one(client_env, fake, prompt):
    headers, first = chat(prompt)
    key = headers["x-llm-cache-key"]
    assert chat(prompt)[0]["x-llm-cache"] == "HIT"
    before = fake.calls()
    headers, fresh = chat(prompt, extra_headers={"X-LLM-Cache-Reject": key})
    assert (headers["x-llm-cache"], headers["x-llm-cache-store"]) == ("MISS", "stored") and fake.calls() == before + 1
    assert "x-llm-cache-reject" not in {name.lower() for name in fake.last()["headers"]}  # the cache's business only
    headers, hit = chat(prompt)
    assert headers["x-llm-cache"] == "HIT" and text(hit) == text(fresh) != text(first)


def test_an_entry_recorded_under_another_dependency_version_is_stale(client_env, fake, prompt):
    def deps(value, header="X-LLM-Cache-Deps"):
        return chat(prompt, extra_headers={header: value})[0]

    assert deps("table:products=abc123, doc:42")["x-llm-cache"] == "MISS"
    assert deps("table:products=abc123, doc:42")["x-llm-cache"] == "HIT"
    before = fake.calls()
    assert deps("table:products=def456, doc:42")["x-llm-cache"] == "MISS"  # the table changed
    assert fake.calls() == before + 1
    assert deps("table:products, doc:42")["x-llm-cache"] == "HIT"  # no version named: the current one
    assert deps("table:products=abc123, doc:42", "X-Cachecore-Deps")["x-llm-cache"] == "MISS"  # Cachecore's form
    assert "x-llm-cache-deps" not in {name.lower() for name in fake.last()["headers"]}


def test_cache_control_max_age_refuses_older_entries(client_env, prompt):
    chat(prompt)
    headers, _ = chat(prompt, extra_headers={"Cache-Control": "max-age=60"})
    assert headers["x-llm-cache"] == "HIT"
    time.sleep(1.1)
    headers, _ = chat(prompt, extra_headers={"Cache-Control": "max-age=0"})
    assert headers["x-llm-cache"] == "MISS"


def test_cache_control_only_if_cached_is_replay_or_504_for_one_request(client_env, fake, prompt):
    before = fake.calls()
    with pytest.raises(openai.APIStatusError) as miss:
        chat(prompt, extra_headers={"Cache-Control": "only-if-cached"})
    assert miss.value.status_code == 504 and "Cache-Control: only-if-cached" in miss.value.body["message"]
    assert fake.calls() == before
    chat(prompt)
    headers, _ = chat(prompt, extra_headers={"Cache-Control": "only-if-cached"})
    assert headers["x-llm-cache"] == "HIT"


@pytest.mark.parametrize(("how", "reason"), [
    ({"extra_body": {"cache": False}}, '"cache": false'),
    ({"extra_body": {"cache_control": {"enabled": False}}}, '"cache_control": {"enabled": false}'),
    ({"extra_headers": {"X-Cache-Bypass": "true"}}, "X-Cache-Bypass: true"),
])
def test_the_seed_caches_bypass_controls_work_and_never_reach_the_provider(client_env, fake, prompt, how, reason):
    for _ in range(2):
        headers, _ = chat(prompt, **how)
        assert (headers["x-llm-cache"], headers["x-llm-cache-reason"]) == ("BYPASS", reason)
        upstream = fake.last()
        body = orjson.loads(upstream["body"])
        assert "cache" not in body and "cache_control" not in body and body["model"] == "gpt-4o-mini"
        assert not {name.lower() for name in upstream["headers"]} & {"x-cache-bypass", "x-llm-cache-ttl"}
    headers, _ = chat(prompt)
    assert headers["x-llm-cache"] == "MISS", "a bypassed request is never recorded"


def test_a_bypassed_stream_still_streams(client_env, prompt):
    stream = openai.OpenAI().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], stream=True,
        extra_headers={"X-Cache-Bypass": "1"})
    chunks = list(stream)
    assert stream.response.headers["x-llm-cache"] == "BYPASS"
    assert prompt in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_namespaces_keep_entries_apart(client_env, fake, prompt):
    def ask(namespace=None):
        headers = {"X-LLM-Cache-Namespace": namespace} if namespace else {}
        return chat(prompt, extra_headers=headers)[0]["x-llm-cache"]
    assert [ask("team-a"), ask("team-a"), ask("team-b"), ask(), ask("team-b")] == ["MISS", "HIT", "MISS", "MISS", "HIT"]
    assert "x-llm-cache-namespace" not in {name.lower() for name in fake.last()["headers"]}


def test_a_request_ttl_expires_the_entry_it_records(client_env, prompt):
    headers, _ = chat(prompt, extra_headers={"X-LLM-Cache-TTL": "1"})
    assert headers["x-llm-cache-store"] == "stored"
    assert chat(prompt)[0]["x-llm-cache"] == "HIT"
    time.sleep(1.1)
    assert chat(prompt)[0]["x-llm-cache"] == "MISS"


def test_a_malformed_control_header_passes_through_with_a_reason(client_env, prompt):
    headers, completion = chat(prompt, extra_headers={"X-LLM-Cache-TTL": "one hour"})
    assert headers["x-llm-cache"] == "BYPASS" and "invalid X-LLM-Cache-TTL 'one hour'" in headers["x-llm-cache-reason"]
    assert prompt in text(completion)


def test_anthropic_cache_control_blocks_reach_the_provider_and_stay_in_the_key(client_env, fake, prompt):
    client = anthropic.Anthropic()

    def ask(block):
        content = [{"type": "text", "text": prompt, **block}]
        raw = client.messages.with_raw_response.create(model="claude-x", max_tokens=5,
                                                       messages=[{"role": "user", "content": content}])
        return raw.headers["x-llm-cache"]

    assert ask({"cache_control": {"type": "ephemeral"}}) == "MISS"
    assert orjson.loads(fake.last()["body"])["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert ask({"cache_control": {"type": "ephemeral"}}) == "HIT"
    assert ask({}) == "MISS"
    raw = client.messages.with_raw_response.create(model="claude-x", max_tokens=5, extra_body={"cache": False},
                                                   messages=[{"role": "user", "content": prompt}])
    assert raw.headers["x-llm-cache"] == "BYPASS" and "cache" not in orjson.loads(fake.last()["body"])
