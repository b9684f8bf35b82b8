"""The real `openai` SDK through a real mitmdump, configured only by environment variables, calling
https://api.openai.com (and other hosts) as an agent would."""

import time

import httpx
import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def chat(client, prompt, **kwargs):
    kwargs.setdefault("model", "gpt-4o-mini")
    raw = client.chat.completions.with_raw_response.create(messages=[{"role": "user", "content": prompt}], **kwargs)
    return raw.headers, raw.parse()


def stream_chat(client, prompt, **kwargs):
    kwargs.setdefault("model", "gpt-4o-mini")
    stream = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], stream=True, **kwargs)
    chunks = list(stream)
    return stream.response.headers, chunks


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_miss_then_hit_with_one_upstream_call(client_env, fake, prompt):
    client = openai.OpenAI()
    before = fake.calls()
    h1, first = chat(client, prompt)
    h2, second = chat(client, prompt)
    assert fake.calls() - before == 1
    assert (h1["x-llm-cache"], h1["x-llm-cache-store"]) == ("MISS", "stored")
    assert h2["x-llm-cache"] == "HIT" and len(h2["x-llm-cache-key"]) == 64 and int(h2["x-llm-cache-age"]) >= 0
    assert second == first and prompt in second.choices[0].message.content


def test_reordered_json_keys_and_integral_floats_hit(client_env, fake, prompt):
    url = "https://api.openai.com/v1/chat/completions"
    one = b'{"model":"gpt-4o-mini","temperature":1,"messages":[{"role":"user","content":"%s"}]}' % prompt.encode()
    two = b'{"messages":[{"content":"%s","role":"user"}],"temperature":1.0,  "model":"gpt-4o-mini"}' % prompt.encode()
    with httpx.Client() as client:  # trust_env: proxy and CA from the environment
        first = client.post(url, content=one, headers={"content-type": "application/json"})
        second = client.post(url, content=two, headers={"content-type": "application/json"})
    assert first.headers["x-llm-cache"] == "MISS" and second.headers["x-llm-cache"] == "HIT"
    assert second.json() == first.json()


@pytest.mark.parametrize(
    "change",
    [{"model": "gpt-4o"}, {"temperature": 0.9}, {"tools": TOOLS}, {"prompt_suffix": "!"}],
    ids=["model", "temperature", "tools", "message"],
)
def test_a_meaningful_change_misses(client_env, fake, prompt, change):
    client = openai.OpenAI()
    chat(client, prompt, temperature=0.2)
    suffix = change.pop("prompt_suffix", "")
    before = fake.calls()
    headers, _ = chat(client, prompt + suffix, **{"temperature": 0.2, **change})
    assert headers["x-llm-cache"] == "MISS" and fake.calls() - before == 1


def test_stream_miss_then_stream_hit(client_env, fake, prompt):
    client = openai.OpenAI()
    before = fake.calls()
    h1, first = stream_chat(client, prompt, stream_options={"include_usage": True})
    h2, second = stream_chat(client, prompt, stream_options={"include_usage": True})
    assert fake.calls() - before == 1
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("MISS", "HIT")
    assert text_of(second) == text_of(first) and prompt in text_of(first)
    assert second[-1].usage is not None and second[-1].usage.total_tokens == 18


def test_a_recorded_stream_answers_a_json_request(client_env, fake, prompt):
    client = openai.OpenAI()
    _, chunks = stream_chat(client, prompt)
    before = fake.calls()
    headers, completion = chat(client, prompt)
    assert fake.calls() == before and headers["x-llm-cache"] == "HIT"
    assert completion.choices[0].message.content == text_of(chunks)
    assert completion.choices[0].finish_reason == "stop"


def test_a_recorded_json_answers_a_stream_request_with_tool_calls_and_usage(client_env, fake, prompt):
    client = openai.OpenAI()
    _, completion = chat(client, prompt, model="fake-tools", tools=TOOLS)
    before = fake.calls()
    # The SDK's own stream helper assembles the synthesised chunks back into a completion.
    with client.chat.completions.stream(model="fake-tools", tools=TOOLS, stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": prompt}]) as stream:
        final = stream.get_final_completion()
        headers = stream.response.headers if hasattr(stream, "response") else None
    assert fake.calls() == before
    call, replayed = completion.choices[0].message.tool_calls[0], final.choices[0].message.tool_calls[0]
    assert (replayed.id, replayed.function.name, replayed.function.arguments) == (
        call.id, call.function.name, call.function.arguments)
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == completion.usage.total_tokens
    assert headers is None or headers["x-llm-cache"] == "HIT"


def test_compressed_upstream_answers_are_stored_decoded_and_replayed(client_env, fake, prompt):
    client = openai.OpenAI()
    _, first = chat(client, prompt, model="fake-gzip")
    headers, second = chat(client, prompt, model="fake-gzip")
    assert headers["x-llm-cache"] == "HIT" and second == first
    _, chunks = stream_chat(client, prompt + " stream", model="fake-gzip")
    headers, replay = stream_chat(client, prompt + " stream", model="fake-gzip")
    assert headers["x-llm-cache"] == "HIT" and text_of(replay) == text_of(chunks) != ""


def test_upstream_errors_reach_the_client_and_are_not_stored(client_env, fake, prompt):
    client = openai.OpenAI(max_retries=0)
    before = fake.calls()
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as error:
            chat(client, prompt, model="fake-500")
        assert error.value.response.headers["x-llm-cache-store"] == "skipped: upstream status 500"
    assert fake.calls() - before == 2


@pytest.mark.parametrize("model", ["fake-truncate", "fake-cut", "fake-error-event"])
def test_broken_streams_are_not_stored(client_env, fake, prompt, model):
    client = openai.OpenAI(max_retries=0)
    before = fake.calls()
    for _ in range(2):
        try:
            stream_chat(client, prompt, model=model)
        except (openai.APIError, httpx.HTTPError):
            pass  # a cut-off stream may surface as an error: what matters is that it is not replayed
    assert fake.calls() - before == 2


def test_a_streamed_miss_reaches_the_client_as_it_arrives(client_env, fake, prompt):
    client = openai.OpenAI()
    start = time.monotonic()
    stream = client.chat.completions.create(model="fake-slow", stream=True,
                                            messages=[{"role": "user", "content": prompt}])
    arrivals = [time.monotonic() - start for _ in stream]
    # The fake spaces its events 300 ms apart: a buffered stream would arrive all at once at the end.
    assert arrivals[-1] > 2.0
    assert arrivals[0] < arrivals[-1] - 1.5
    assert stream.response.headers["x-llm-cache"] == "MISS"


@pytest.mark.parametrize(
    "base_url",
    ["https://openrouter.ai/api/v1", "https://api.groq.com/openai/v1", "https://llm.example.test:8443/v1",
     "https://127.0.0.1:{https}/v1", "http://127.0.0.1:{http}/v1"],
    ids=["openrouter", "groq", "any-host-and-port", "local-https", "local-plain-http"],
)
def test_any_openai_compatible_host(client_env, fake, prompt, base_url, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", base_url.format(https=fake.https_port, http=fake.http_port))
    client = openai.OpenAI()
    before = fake.calls()
    h1, first = chat(client, prompt)
    h2, second = chat(client, prompt)
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("MISS", "HIT") and second == first
    assert fake.calls() - before == 1


def test_embeddings_and_responses_are_cached(client_env, fake, prompt):
    client = openai.OpenAI()
    raw = [client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=prompt) for _ in range(2)]
    assert [r.headers["x-llm-cache"] for r in raw] == ["MISS", "HIT"]
    assert raw[0].parse().data[0].embedding == raw[1].parse().data[0].embedding
    responses = [client.responses.with_raw_response.create(model="gpt-4o-mini", input=prompt) for _ in range(2)]
    assert [r.headers["x-llm-cache"] for r in responses] == ["MISS", "HIT"]
    assert responses[1].parse().output_text == responses[0].parse().output_text


def test_responses_stream_miss_hit_and_served_as_json(client_env, fake, prompt):
    client = openai.OpenAI()
    before = fake.calls()
    texts = []
    for _ in range(2):
        with client.responses.stream(model="gpt-4o-mini", input=prompt) as stream:
            texts.append(stream.get_final_response().output_text)
    as_json = client.responses.with_raw_response.create(model="gpt-4o-mini", input=prompt)
    assert fake.calls() - before == 1
    assert texts[0] == texts[1] == as_json.parse().output_text and prompt in texts[0]
    assert as_json.headers["x-llm-cache"] == "HIT"
    assert as_json.parse().usage.total_tokens == 12


def test_legacy_completions_json_and_stream(client_env, fake, prompt):
    client = openai.OpenAI()
    before = fake.calls()
    raw = [client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt=prompt)
           for _ in range(2)]
    assert [r.headers["x-llm-cache"] for r in raw] == ["MISS", "HIT"]
    assert raw[0].parse().choices[0].text == raw[1].parse().choices[0].text
    texts, heads = [], []
    for _ in range(2):  # each stream read to its end before the next request
        stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt + " streamed", stream=True)
        texts.append("".join(c.choices[0].text for c in stream if c.choices))
        heads.append(stream.response.headers["x-llm-cache"])
    assert heads == ["MISS", "HIT"]
    assert texts[0] == texts[1] and "streamed" in texts[0]
    assert fake.calls() - before == 2


def test_one_cache_serves_a_key_rotation(client_env, fake, prompt):
    first = chat(openai.OpenAI(api_key="sk-proj-OLDKEY"), prompt)
    second = chat(openai.OpenAI(api_key="sk-proj-NEWKEY"), prompt)
    assert (first[0]["x-llm-cache"], second[0]["x-llm-cache"]) == ("MISS", "HIT")
