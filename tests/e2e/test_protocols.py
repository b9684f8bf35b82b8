"""Every protocol through a real mitmdump with its real client, configured only by environment variables:
OpenAI Responses (also Azure's v1 path and the Codex backend, with the Codex WebSocket fallback),
Azure OpenAI deployments, Gemini (google-genai; Vertex and the Gemini CLI's v1internal by httpx; the
JSON-array stream by curl), Ollama (the ollama client), legacy completions and FIM, the OpenAI-compatible
quirks, and Bedrock's pass-through. Each stores a first answer and serves the same request, and the
other wire format (JSON <-> stream), from the cache."""

import json
import os
import sqlite3
import subprocess
import time
import zlib

import httpx
import ollama
import openai
import pytest
import websockets.sync.client
from google import genai

from tests.support.procs import wait_for

GEMINI_KEY = "AIzaSyE2ESECRETGEMINIKEY0123456789"
AZURE_KEY = "e2e0azure0secret0key"


@pytest.fixture
def agent(client_env, monkeypatch, fake):
    """An agent's environment, with every provider's credentials and endpoints set as users set them."""
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example-resource.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", AZURE_KEY)
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    monkeypatch.setenv("OLLAMA_HOST", "http://localhost:11434")
    return client_env


def stored_bytes(proxy, prompt: str, entries: int = 1) -> bytes:
    """Every byte stored for this test's entries (request copies inflated) and the database files,
    once the writer has committed at least `entries` of them."""

    def rows() -> list[bytes]:
        with sqlite3.connect(proxy.db_path) as db:
            found = []
            for row in db.execute("select * from cache_entry"):
                values = [zlib.decompress(v) if isinstance(v, bytes) and v[:1] == b"x" else v for v in row]
                flat = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in values)
                if prompt.encode() in flat:
                    found.append(flat)
            return found

    assert wait_for(lambda: len(rows()) >= entries), "the entries were not written"
    files = b"".join(p.read_bytes() for p in proxy.db_path.parent.glob("cache.sqlite3*"))
    return b"".join(rows()) + files


def post(url: str, body: dict, **headers: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:  # trust_env: proxy and CA from the environment
        return client.post(url, json=body, headers=headers)


# -- OpenAI Responses -----------------------------------------------------------------------------

def test_responses_json_then_stream_synthesised(agent, fake, prompt):
    client = openai.OpenAI()
    first = client.responses.with_raw_response.create(model="gpt-4.1-mini", input=prompt)
    before = fake.calls()
    stream = client.responses.create(model="gpt-4.1-mini", input=prompt, stream=True)
    events = list(stream)
    assert stream.response.headers["x-llm-cache"] == "HIT" and fake.calls() == before
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == first.parse().output_text
    # The SDK's strict accumulator (responses.stream) takes the synthesised sequence too.
    with client.responses.stream(model="gpt-4.1-mini", input=prompt) as helper:
        final = helper.get_final_response()
    assert final.output_text == first.parse().output_text and prompt in final.output_text


@pytest.mark.parametrize("model", ["gpt-4.1-mini", "fake-tools", "fake-reasoning"])
def test_responses_stream_then_json_assembled(agent, fake, prompt, model):
    client = openai.OpenAI()
    with client.responses.stream(model=model, input=prompt) as recorded:
        streamed = recorded.get_final_response()
    assert recorded._response.headers["x-llm-cache"] == "MISS"
    before = fake.calls()
    raw = client.responses.with_raw_response.create(model=model, input=prompt)
    assert raw.headers["x-llm-cache"] == "HIT" and fake.calls() == before
    assert [_plain(item) for item in raw.parse().output] == [_plain(item) for item in streamed.output]


def _plain(value):
    """A model as plain data, without the `parsed` fields the SDK's stream helper adds."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_responses_failed_streams_are_not_stored(agent, fake, prompt):
    client = openai.OpenAI()
    before = fake.calls()
    for _ in range(2):
        with client.responses.create(model="fake-error-event", input=prompt, stream=True) as stream:
            kinds = [event.type for event in stream]
        assert kinds[-1] == "response.failed"
    assert fake.calls() == before + 2  # the second went upstream again: nothing was stored


def test_azure_v1_and_codex_responses_paths(agent, fake, prompt, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://example-resource.openai.azure.com/openai/v1/")
    azure = openai.OpenAI()
    assert azure.responses.with_raw_response.create(model="gpt-4.1", input=prompt).headers["x-llm-cache"] == "MISS"
    assert azure.responses.with_raw_response.create(model="gpt-4.1", input=prompt).headers["x-llm-cache"] == "HIT"
    codex = {"model": "gpt-5-codex", "instructions": "You are Codex.", "stream": True, "store": False,
             "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
             "prompt_cache_key": "conversation-1"}
    url = "https://chatgpt.com/backend-api/codex/responses"
    first = post(url, codex, authorization="Bearer chatgpt-token")
    second = post(url, {**codex, "prompt_cache_key": "conversation-2"}, authorization="Bearer chatgpt-token")
    assert (first.headers["x-llm-cache"], second.headers["x-llm-cache"]) == ("MISS", "HIT")
    assert second.text == first.text and "response.completed" in second.text


def test_codex_websocket_upgrade_gets_426_and_the_client_falls_back_to_sse(agent, fake, prompt):
    """What the Codex CLI does: try a WebSocket on /responses, and on 426 use HTTP + SSE instead."""

    def codex_turn() -> httpx.Response:
        try:
            with websockets.sync.client.connect("wss://chatgpt.com/backend-api/codex/responses",
                                                open_timeout=10):
                raise AssertionError("the upgrade should have been refused")
        except websockets.exceptions.InvalidStatus as refused:
            assert refused.response.status_code == 426
            assert refused.response.headers["x-llm-cache"] == "BYPASS"
        body = {"model": "gpt-5-codex", "stream": True, "input": prompt, "store": False}
        return post("https://chatgpt.com/backend-api/codex/responses", body)

    assert codex_turn().headers["x-llm-cache"] == "MISS"
    before = fake.calls()
    assert codex_turn().headers["x-llm-cache"] == "HIT" and fake.calls() == before


# -- Azure OpenAI deployments ---------------------------------------------------------------------

def test_azure_deployment_model_from_path_and_api_version_keyed(agent, fake, prompt):
    client = openai.AzureOpenAI()
    first = client.chat.completions.with_raw_response.create(
        model="my-gpt4o", messages=[{"role": "user", "content": prompt}])
    assert fake.last()["path"].startswith("/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21")
    again = client.chat.completions.with_raw_response.create(
        model="my-gpt4o", messages=[{"role": "user", "content": prompt}])
    assert (first.headers["x-llm-cache"], again.headers["x-llm-cache"]) == ("MISS", "HIT")
    newer = openai.AzureOpenAI(api_version="2025-01-01-preview").chat.completions.with_raw_response.create(
        model="my-gpt4o", messages=[{"role": "user", "content": prompt}])
    assert newer.headers["x-llm-cache"] == "MISS"  # api-version is part of the key
    # A raw call without "model" in the body: the deployment in the path names it.
    url = "https://example-resource.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    raw = [post(url, {"messages": [{"role": "user", "content": prompt + " raw"}]}, **{"api-key": AZURE_KEY})
           for _ in range(2)]
    assert [r.headers["x-llm-cache"] for r in raw] == ["MISS", "HIT"]
    assert AZURE_KEY.encode() not in stored_bytes(agent, prompt, entries=3)


# -- Gemini ---------------------------------------------------------------------------------------

def test_gemini_sdk_json_and_stream_both_ways(agent, fake, prompt):
    client = genai.Client()
    first = client.models.generate_content(model="gemini-2.5-flash", contents=prompt)
    assert first.sdk_http_response.headers["x-llm-cache"] == "MISS" and prompt in first.text
    before = fake.calls()
    again = client.models.generate_content(model="gemini-2.5-flash", contents=prompt)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=prompt))
    assert fake.calls() == before
    assert again.sdk_http_response.headers["x-llm-cache"] == "HIT" and again.text == first.text
    assert "".join(c.text for c in chunks) == first.text

    streamed = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=prompt + " s"))
    assert streamed[0].sdk_http_response.headers["x-llm-cache"] == "MISS" and len(streamed) > 1
    before = fake.calls()
    assembled = client.models.generate_content(model="gemini-2.5-flash", contents=prompt + " s")
    assert assembled.sdk_http_response.headers["x-llm-cache"] == "HIT" and fake.calls() == before
    assert assembled.text == "".join(c.text for c in streamed)
    assert assembled.candidates[0].finish_reason == "STOP" and assembled.usage_metadata.total_token_count == 10
    assert "x-goog-api-key" in {k.lower() for k in fake.last()["headers"]}
    assert GEMINI_KEY.encode() not in stored_bytes(agent, prompt, entries=2)


def test_gemini_embeddings(agent, fake, prompt):
    client = genai.Client()
    first = client.models.embed_content(model="text-embedding-004", contents=[prompt, prompt + " 2"])
    before = fake.calls()
    again = client.models.embed_content(model="text-embedding-004", contents=[prompt, prompt + " 2"])
    assert fake.calls() == before and again.sdk_http_response.headers["x-llm-cache"] == "HIT"
    assert [e.values for e in again.embeddings] == [e.values for e in first.embeddings] and len(first.embeddings) == 2


def test_gemini_key_query_parameter_is_a_credential(agent, fake, prompt):
    url = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    first = post(f"{url}?key={GEMINI_KEY}", body)
    second = post(f"{url}?key=AIzaSyANOTHERKEY", body)
    assert (first.headers["x-llm-cache"], second.headers["x-llm-cache"]) == ("MISS", "HIT")
    stored = stored_bytes(agent, prompt)
    assert GEMINI_KEY.encode() not in stored and b"gemini-2.5-flash:generateContent" in stored


def test_gemini_json_array_stream_by_curl(agent, fake, prompt, tmp_path):
    """Without ?alt=sse Gemini streams one JSON array; recorded, it answers the SSE and JSON forms too."""
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": prompt}]}]})

    def curl(url: str) -> tuple[str, str]:
        head, payload = tmp_path / "head", tmp_path / "body"
        out = subprocess.run(["curl", "-sS", "-D", str(head), "-o", str(payload), "--data", body, url,
                              "-H", "content-type: application/json", "-H", f"x-goog-api-key: {GEMINI_KEY}"],
                             capture_output=True, text=True, timeout=30,
                             env={"PATH": os.environ["PATH"], **agent.client_env()})
        assert out.returncode == 0, out.stderr
        return head.read_text().lower(), payload.read_text()

    head, array = curl(f"{base}:streamGenerateContent")
    assert "x-llm-cache: miss" in head and array.startswith("[")
    chunks = json.loads(array)
    assert len(chunks) > 1 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    before = fake.calls()
    head, again = curl(f"{base}:streamGenerateContent")
    assert "x-llm-cache: hit" in head and json.loads(again) == chunks
    head, sse = curl(f"{base}:streamGenerateContent?alt=sse")
    assert "x-llm-cache: hit" in head and "text/event-stream" in head
    assert [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: ")] == chunks
    head, whole = curl(f"{base}:generateContent")
    assert "x-llm-cache: hit" in head and fake.calls() == before
    text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert json.loads(whole)["candidates"][0]["content"]["parts"] == [{"text": text}]


def test_gemini_vertex_path(agent, fake, prompt):
    url = ("https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/publishers/google/"
           "models/gemini-2.5-pro:generateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    answers = [post(url, body, authorization="Bearer ya29.vertex-token") for _ in range(2)]
    assert [a.headers["x-llm-cache"] for a in answers] == ["MISS", "HIT"]
    assert answers[1].json() == answers[0].json()


def test_gemini_cli_v1internal_wrapped_payloads(agent, fake, prompt):
    def body(prompt_id: str) -> dict:
        return {"model": "gemini-2.5-pro", "project": "proj-1", "user_prompt_id": prompt_id,
                "request": {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "session_id": prompt_id}}

    base = "https://cloudcode-pa.googleapis.com/v1internal"
    streamed = post(f"{base}:streamGenerateContent?alt=sse", body("a1"), authorization="Bearer oauth")
    assert streamed.headers["x-llm-cache"] == "MISS"
    before = fake.calls()
    again = post(f"{base}:streamGenerateContent?alt=sse", body("b2"), authorization="Bearer oauth")
    whole = post(f"{base}:generateContent", body("c3"), authorization="Bearer oauth")
    assert (again.headers["x-llm-cache"], whole.headers["x-llm-cache"]) == ("HIT", "HIT") and fake.calls() == before
    assert again.text == streamed.text
    wrapped = whole.json()
    assert wrapped["traceId"] and prompt in wrapped["response"]["candidates"][0]["content"]["parts"][0]["text"]


@pytest.mark.parametrize("model", ["fake-cut", "fake-error-event"])
def test_gemini_incomplete_streams_are_not_stored(agent, fake, prompt, model):
    url = f"https://generativelanguage.googleapis.com/v1beta/models/{model}:streamGenerateContent?alt=sse"
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    before = fake.calls()
    answers = [post(url, body) for _ in range(2)]
    assert [a.headers["x-llm-cache"] for a in answers] == ["MISS", "MISS"] and fake.calls() == before + 2


# -- Ollama ---------------------------------------------------------------------------------------

def test_ollama_chat_streams_by_default_and_serves_json_from_the_stream(agent, fake, prompt):
    client = ollama.Client()
    messages = [{"role": "user", "content": prompt}]
    streamed = list(client.chat(model="llama3.2", messages=messages, stream=True))
    assert streamed[-1].done and prompt in "".join(part.message.content for part in streamed)
    before = fake.calls()
    again = list(client.chat(model="llama3.2", messages=messages, stream=True, keep_alive="10m"))
    whole = client.chat(model="llama3.2", messages=messages)  # the client sends "stream": false
    assert fake.calls() == before
    assert [p.message.content for p in again] == [p.message.content for p in streamed]
    assert whole.message.content == "".join(p.message.content for p in streamed)
    assert whole.done and whole.eval_count == 7


def test_ollama_generate_json_then_stream_and_embeddings(agent, fake, prompt):
    client = ollama.Client()
    whole = client.generate(model="llama3.2", prompt=prompt)
    before = fake.calls()
    parts = list(client.generate(model="llama3.2", prompt=prompt, stream=True))
    assert fake.calls() == before
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done and parts[-1].context == [1, 2, 3]
    first = client.embed(model="nomic-embed-text", input=prompt)
    second = client.embed(model="nomic-embed-text", input=prompt)
    legacy = [client.embeddings(model="nomic-embed-text", prompt=prompt) for _ in range(2)]
    assert second.embeddings == first.embeddings and legacy[0].embedding == legacy[1].embedding
    assert fake.calls() == before + 2


@pytest.mark.parametrize("url", [
    "http://localhost:11434/api/chat",
    "https://generativelanguage.googleapis.com/v1beta/models/fake-slow:streamGenerateContent",
], ids=["ollama-ndjson", "gemini-json-array"])
def test_ndjson_and_json_array_misses_reach_the_client_as_they_arrive(agent, fake, prompt, url):
    body = ({"model": "fake-slow", "messages": [{"role": "user", "content": prompt}]} if "11434" in url
            else {"contents": [{"role": "user", "parts": [{"text": prompt}]}]})
    start = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body) as response:
        arrivals = [time.monotonic() - start for _ in response.iter_raw()]
        assert response.headers["x-llm-cache"] == "MISS"
    # The fake spaces its pieces 300 ms apart: a buffered answer would arrive all at once at the end.
    assert len(arrivals) > 3 and arrivals[0] < arrivals[-1] - 1.0


def test_ollama_raw_ndjson_with_headers_and_errors(agent, fake, prompt):
    url = "http://localhost:11434/api/chat"
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}]}  # no "stream": streams
    first, second = post(url, body), post(url, body)
    assert (first.headers["x-llm-cache"], second.headers["x-llm-cache"]) == ("MISS", "HIT")
    assert first.headers["content-type"] == "application/x-ndjson" and second.text == first.text
    assert json.loads(first.text.splitlines()[-1])["done"] is True
    broken = {**body, "model": "fake-error-event"}
    assert [post(url, broken).headers["x-llm-cache"] for _ in range(2)] == ["MISS", "MISS"]


# -- Legacy completions, FIM, OpenAI-compatible quirks, Bedrock ----------------------------------

def test_completions_json_then_stream_synthesised(agent, fake, prompt):
    client = openai.OpenAI()
    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt)
    before = fake.calls()
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt=prompt, stream=True))
    assert fake.calls() == before
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    fim = "https://api.openai.com/v1/fim/completions"
    body = {"model": "codestral-latest", "prompt": "def f(", "suffix": prompt, "stream": True}
    streamed = post(fim, body)
    joined = post(fim, {**body, "stream": False})
    assert (streamed.headers["x-llm-cache"], joined.headers["x-llm-cache"]) == ("MISS", "HIT")
    assert joined.json()["object"] == "text_completion" and joined.json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("model, stored", [
    ("fake-openrouter", True), ("fake-azure", True), ("fake-no-done", True), ("fake-midstream-error", False),
])
def test_openai_compatible_stream_quirks(agent, fake, prompt, monkeypatch, model, stored):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://openrouter.ai/api/v1")
    client = openai.OpenAI()
    messages = [{"role": "user", "content": prompt}]
    text = ""
    try:
        for chunk in client.chat.completions.create(model=model, messages=messages, stream=True):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    except openai.APIError as e:  # the SDK raises OpenRouter's mid-stream error, as it would without us
        assert model == "fake-midstream-error" and "Provider disconnected" in str(e)
    assert prompt in text  # passed through whole, whatever the quirk
    before = fake.calls()
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    assert (raw.headers["x-llm-cache"] == "HIT") is stored and (fake.calls() == before) is stored
    if stored:
        assert raw.parse().choices[0].message.content == text


def test_bedrock_is_recognised_and_passed_through(agent, fake, prompt):
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet/converse"
    body = {"messages": [{"role": "user", "content": [{"text": prompt}]}]}
    before = fake.calls()
    signed = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261122/us-east-1/bedrock/aws4_request"
    answers = [post(url, body, authorization=signed) for _ in range(2)]
    assert fake.calls() == before + 2
    assert all(a.headers["x-llm-cache"] == "BYPASS" and "Bedrock" in a.headers["x-llm-cache-reason"] for a in answers)
    assert prompt in answers[1].json()["output"]["message"]["content"][0]["text"]
