"""Cache policy set in options, through real mitmdump processes with the real SDKs."""

import sqlite3
import time
import zlib

import anthropic
import openai
import pytest

from tests.e2e.control_helpers import chat, options, point_agent_at, text
from tests.support.procs import Mitmdump

PLANTED = "AKIAQWERTYUIOPASDFGH"


@pytest.fixture
def start(tmp_path, certs, fake):
    started: list[Mitmdump] = []

    def start(folder="proxy", db=None, upstream_https=None, **opts) -> Mitmdump:
        route = {"upstream_https": upstream_https} if upstream_https else {"fake": fake}
        proxy = Mitmdump(tmp_path / folder, certs=certs, db_url=db, extra=options(**opts), **route)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def database_text(proxy: Mitmdump) -> bytes:
    """Every byte of the cache, with the compressed request copies inflated."""
    proxy.stop()
    raw = proxy.db_path.read_bytes()
    with sqlite3.connect(proxy.db_path) as db:
        requests = [zlib.decompress(blob) for (blob,) in db.execute("select request from cache_entry")]
    return raw + b"".join(requests)


def test_lists_size_limits_and_secrets(start, monkeypatch, prompt):
    proxy = start(deny_models=["denied-*"], allow_hosts=["api.openai.com", "api.anthropic.com"],
                  max_request_bytes=20000, max_response_bytes=3000)
    point_agent_at(proxy, monkeypatch)
    headers, _ = chat(prompt, model="denied-model")
    assert headers["x-llm-cache"] == "BYPASS"
    assert headers["x-llm-cache-reason"] == "model denied-model denied by 'denied-*'"
    headers, _ = chat(prompt, client=openai.OpenAI(base_url="https://openrouter.ai/api/v1"))
    assert headers["x-llm-cache-reason"] == "host openrouter.ai not in the allow list"
    headers, _ = chat(prompt + "x" * 25000)
    assert headers["x-llm-cache"] == "BYPASS" and "over llm_cache_max_request_bytes" in headers["x-llm-cache-reason"]
    headers, _ = chat(prompt + "y" * 4000)
    assert headers["x-llm-cache"] == "MISS"
    assert headers["x-llm-cache-store"].startswith("skipped: response over llm_cache_max_response_bytes")

    for _ in range(2):
        headers, _ = chat(f"{prompt}: my .env says AWS_ACCESS_KEY_ID={PLANTED}")
        assert headers["x-llm-cache-store"] == "skipped: the request carries an AWS access key"
    headers, _ = chat(f"{prompt}: the secret ingredient is love")
    assert headers["x-llm-cache-store"] == "stored", "ordinary prose is no false alarm"
    stored = database_text(proxy)
    assert b"secret ingredient" in stored and PLANTED.encode() not in stored


def test_deterministic_temperature_policy_credential_scope_and_compat_headers(start, monkeypatch, prompt):
    proxy = start(temperature="deterministic", scope="credential", compat_headers=True)
    point_agent_at(proxy, monkeypatch, OPENAI_API_KEY="sk-proj-KEYOFALICE0001")
    headers, _ = chat(prompt, temperature=0.7)
    assert headers["x-llm-cache"] == "BYPASS" and "deterministic" in headers["x-llm-cache-reason"]
    assert (headers["x-code-model-cache"], headers["x-cache"]) == ("BYPASS", "BYPASS")
    for kwargs in ({"temperature": 0}, {"seed": 7}):
        miss, _ = chat(prompt, **kwargs)
        hit, _ = chat(prompt, **kwargs)
        assert (miss["x-llm-cache"], miss["x-cache"], miss["x-computer-use-cache-store"]) == ("MISS", "MISS", "stored")
        assert (hit["x-llm-cache"], hit["x-computer-use-cache"], hit["x-code-model-cache"], hit["x-cache"]) == (
            "HIT", "HIT", "HIT", "HIT_L1")
        assert hit["x-code-model-cache-key"] == hit["x-llm-cache-key"] and int(hit["x-cache-age"]) >= 0

    bob = openai.OpenAI(api_key="sk-proj-KEYOFBOB00002")
    assert chat(prompt, temperature=0, client=bob)[0]["x-llm-cache"] == "MISS", "another key, another partition"
    assert chat(prompt, temperature=0, client=bob)[0]["x-llm-cache"] == "HIT"
    assert chat(prompt, temperature=0)[0]["x-llm-cache"] == "HIT"
    stored = database_text(proxy)
    assert b"KEYOFALICE" not in stored and b"KEYOFBOB" not in stored


def test_samples_replay_an_agents_retries_in_order(start, monkeypatch, prompt):
    proxy = start(samples=2)
    point_agent_at(proxy, monkeypatch)
    first = [chat(prompt) for _ in range(3)]
    assert [h["x-llm-cache"] for h, _ in first] == ["MISS", "MISS", "HIT"]
    assert text(first[0][1]) != text(first[1][1]) and text(first[2][1]) == text(first[0][1])
    proxy.stop()
    proxy.start()  # a new run counts from the first sample again
    point_agent_at(proxy, monkeypatch)
    second = [chat(prompt) for _ in range(3)]
    assert [h["x-llm-cache"] for h, _ in second] == ["HIT", "HIT", "HIT"]
    assert [text(c) for _, c in second] == [text(first[0][1]), text(first[1][1]), text(first[0][1])]


def test_ttl_and_stale_if_error(start, fake, monkeypatch, prompt, certs):
    url = f"https://127.0.0.1:{fake.https_port}/v1"  # the reachability check connects where the request goes
    proxy = start(ttl=1, stale_if_error=True)
    point_agent_at(proxy, monkeypatch, OPENAI_BASE_URL=url)
    _, recorded = chat(prompt)
    assert chat(prompt)[0]["x-llm-cache"] == "HIT"
    time.sleep(1.1)
    fake.fail_with(503)
    try:
        headers, stale = chat(prompt)
    finally:
        fake.fail_with(0)
    assert headers["x-llm-cache"] == "STALE" and text(stale) == text(recorded)
    headers, fresh = chat(prompt)
    assert headers["x-llm-cache"] == "MISS" and text(fresh) != text(recorded), "an expired entry is refetched"

    # The provider cannot be reached at all: a second proxy on the same cache, routed to a closed port.
    closed = "https://127.0.0.1:1/v1"
    point_agent_at(proxy, monkeypatch, OPENAI_BASE_URL=closed)
    chat(prompt + " offline")
    proxy.stop()
    offline = start("offline", db=f"sqlite:///{proxy.db_path}", upstream_https=1, ttl=1, stale_if_error=True)
    point_agent_at(offline, monkeypatch, OPENAI_BASE_URL=closed)
    time.sleep(1.1)
    headers, _ = chat(prompt + " offline")
    assert headers["x-llm-cache"] == "STALE"


def test_an_agent_transcript_with_new_ids_timestamps_and_user_replays_from_the_cache(start, monkeypatch, prompt):
    proxy = start(normalise=[r"\d{4}-\d\d-\d\dT[\d:.]+Z"], ignore_fields=["extra.trace_id"])
    point_agent_at(proxy, monkeypatch)

    def run(stamp, ids, user):
        """An agent loop: ask, get a tool call, answer it, get the final text. Returns the cache statuses."""
        statuses = []
        messages = [{"role": "system", "content": f"Now is {stamp}."}, {"role": "user", "content": prompt}]
        common = {"user": user, "metadata": {"run": user}, "extra_body": {"extra": {"trace_id": user}}}
        for turn, model in enumerate(["fake-tools", "fake-tools", "gpt-4o-mini"]):
            headers, completion = chat(prompt, messages=messages, model=model, **common)
            statuses.append(headers["x-llm-cache"])
            if model == "fake-tools":
                call = completion.choices[0].message.tool_calls[0]
                messages += [
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": ids[turn], "type": "function",
                         "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
                    {"role": "tool", "tool_call_id": ids[turn], "content": f"sunny at {stamp}"},
                ]
        return statuses

    assert run("2026-11-22T10:00:00Z", ["call_a1", "call_a2"], "alice") == ["MISS", "MISS", "MISS"]
    assert run("2026-11-23T08:15:42Z", ["call_zz9", "call_zz8"], "bob") == ["HIT", "HIT", "HIT"]


def test_claude_codes_profile_applies_to_claude_codes_requests_only(start, monkeypatch, prompt):
    # The real Claude Code is tested in tests/agents; this pins that its profile is chosen by the
    # request's User-Agent, and that the same body from another client keeps every byte in its key.
    point_agent_at(start(), monkeypatch)

    def ask(client, cch, tool_id):
        raw = client.messages.with_raw_response.create(
            model="claude-x", max_tokens=5, metadata={"user_id": f"user_{cch}"},
            system=[{"type": "text", "text": f"x-anthropic-billing-header: cc_version=2.0.14; cch={cch};"},
                    {"type": "text", "text": "You are Claude Code."}],
            messages=[
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "ls", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "a.py"}]},
            ])
        return raw.headers["x-llm-cache"]

    claude_code = anthropic.Anthropic(default_headers={"User-Agent": "claude-cli/2.1.332 (external, cli)"})
    assert [ask(claude_code, "3fa9c", "toolu_01AAA"), ask(claude_code, "91b0e", "toolu_01ZZZ")] == ["MISS", "HIT"]
    sdk = anthropic.Anthropic()
    assert [ask(sdk, "3fa9c", "toolu_01BBB"), ask(sdk, "91b0e", "toolu_01CCC")] == ["MISS", "MISS"]
