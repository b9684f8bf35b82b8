"""The real `anthropic` SDK through a real mitmdump, configured only by environment variables."""

import anthropic
import httpx

TOOLS = [{"name": "get_weather", "description": "weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}]


def create(client, prompt, **kwargs):
    kwargs.setdefault("model", "claude-test-model")
    raw = client.messages.with_raw_response.create(max_tokens=64, messages=[{"role": "user", "content": prompt}],
                                                   **kwargs)
    return raw.headers, raw.parse()


def stream(client, prompt, **kwargs):
    kwargs.setdefault("model", "claude-test-model")
    with client.messages.stream(max_tokens=64, messages=[{"role": "user", "content": prompt}], **kwargs) as s:
        text = "".join(s.text_stream)
        return s.response.headers, text, s.get_final_message()


def test_miss_then_hit_with_one_upstream_call(client_env, fake, prompt):
    client = anthropic.Anthropic()
    before = fake.calls()
    h1, first = create(client, prompt)
    h2, second = create(client, prompt)
    assert fake.calls() - before == 1
    assert (h1["x-llm-cache"], h1["x-llm-cache-store"], h2["x-llm-cache"]) == ("MISS", "stored", "HIT")
    assert second == first and prompt in second.content[0].text


def test_stream_miss_then_stream_hit(client_env, fake, prompt):
    client = anthropic.Anthropic()
    before = fake.calls()
    h1, text1, final1 = stream(client, prompt)
    h2, text2, final2 = stream(client, prompt)
    assert fake.calls() - before == 1
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("MISS", "HIT")
    assert text2 == text1 and prompt in text1 and final2 == final1


def test_a_recorded_stream_answers_a_json_request(client_env, fake, prompt):
    client = anthropic.Anthropic()
    _, _, streamed = stream(client, prompt, model="fake-tools", tools=TOOLS)
    before = fake.calls()
    headers, message = create(client, prompt, model="fake-tools", tools=TOOLS)
    assert fake.calls() == before and headers["x-llm-cache"] == "HIT"
    assert message.model_dump() == streamed.model_dump()
    assert message.content[1].type == "tool_use" and message.content[1].input["city"] == "Paris"
    assert message.stop_reason == "tool_use" and message.usage.output_tokens == 9


def test_a_recorded_json_answers_a_stream_request(client_env, fake, prompt):
    client = anthropic.Anthropic()
    _, message = create(client, prompt, model="fake-tools", tools=TOOLS)
    before = fake.calls()
    headers, text, final = stream(client, prompt, model="fake-tools", tools=TOOLS)
    assert fake.calls() == before and headers["x-llm-cache"] == "HIT"
    assert final.model_dump() == message.model_dump() and text == message.content[0].text


def test_claude_codes_beta_endpoint_is_cached(client_env, fake, prompt):
    # Claude Code posts to /v1/messages?beta=true with anthropic-beta flags.
    headers = {"x-api-key": "sk-ant-E2ESECRETANTHROPIC", "anthropic-version": "2023-06-01",
               "anthropic-beta": "interleaved-thinking-2025-05-14"}
    body = {"model": "claude-test-model", "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}
    with httpx.Client() as client:
        answers = [client.post("https://api.anthropic.com/v1/messages?beta=true", json=body, headers=headers)
                   for _ in range(2)]
    assert [a.headers["x-llm-cache"] for a in answers] == ["MISS", "HIT"]
    assert answers[1].json() == answers[0].json()


def test_a_different_beta_header_misses(client_env, fake, prompt):
    client = anthropic.Anthropic()
    heads = [client.beta.messages.with_raw_response.create(
        model="claude-test-model", max_tokens=64, betas=[beta], messages=[{"role": "user", "content": prompt}]
    ).headers["x-llm-cache"] for beta in ("one-beta", "another-beta")]
    assert heads == ["MISS", "MISS"]


def test_count_tokens_is_passed_through(client_env, fake, prompt):
    before = fake.calls()
    with httpx.Client() as client:
        for _ in range(2):
            r = client.post("https://api.anthropic.com/v1/messages/count_tokens",
                            json={"model": "claude", "messages": [{"role": "user", "content": prompt}]})
            assert "x-llm-cache" not in r.headers
    assert fake.calls() - before == 2
