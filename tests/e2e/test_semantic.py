"""The semantic and synthesis tiers through a real mitmdump, with the openai and anthropic SDKs over
HTTPS: a last turn that says the same in an otherwise identical conversation gets the stored answer
(HIT-SEMANTIC), in JSON or as a stream; anything else is an ordinary miss. Embeddings come from the
fake provider's deterministic endpoint (a bag of words), called through the proxy itself; one test
uses the bundled local embedder."""

import anthropic
import httpx
import pytest

from tests.e2e.control_helpers import chat, options, point_agent_at, text
from tests.support.procs import Mitmdump, wait_for

EMBEDDINGS = "https://api.openai.com/v1/embeddings"


def posts(fake, path: str) -> int:
    return httpx.get(f"http://127.0.0.1:{fake.http_port}/__calls").json()["posts"].get(path, 0)


@pytest.fixture(scope="module")
def semantic_proxy(tmp_path_factory, certs, fake):
    proxy = Mitmdump(tmp_path_factory.mktemp("semantic"), certs=certs, fake=fake, extra=options(
        semantic=True, semantic_embedder=EMBEDDINGS, semantic_embedding_model="fake-embed-words",
        semantic_block_after=1, compat_headers=True))
    yield proxy
    proxy.stop()


@pytest.fixture
def agent(semantic_proxy, monkeypatch):
    point_agent_at(semantic_proxy, monkeypatch)
    return semantic_proxy


def test_a_turn_that_says_the_same_gets_the_stored_answer(agent, fake, request):
    topic = request.node.name
    first_headers, first = chat(f"What is the capital of France, asks {topic}?")
    assert first_headers["x-llm-cache"] == "MISS"
    chats, embeds = posts(fake, "/v1/chat/completions"), posts(fake, "/v1/embeddings")
    headers, again = chat(f"what's the capital of france asks {topic}")  # case, punctuation, framing
    assert headers["x-llm-cache"] == "HIT-SEMANTIC"
    assert headers["x-llm-cache-key"] == first_headers["x-llm-cache-key"]
    assert 0.75 <= float(headers["x-llm-cache-similarity"]) <= 1.0
    assert headers["x-cache"] == "HIT_L2"
    assert text(again) == text(first)
    assert posts(fake, "/v1/chat/completions") == chats  # the model was not asked
    assert posts(fake, "/v1/embeddings") == embeds + 1  # the new turn was embedded, through the proxy
    # The exact tier is untouched: the first request is an exact hit, and its embedding one too.
    assert chat(f"What is the capital of France, asks {topic}?")[0]["x-llm-cache"] == "HIT"
    assert posts(fake, "/v1/embeddings") == embeds + 1
    # A request may ask for the exact tier alone.
    exact = agent_client({"X-LLM-Cache-Tiers": "exact"})
    assert chat(f"what's the capital of france asks {topic}", client=exact)[0]["x-llm-cache"] == "MISS"


def test_another_entity_number_or_negation_is_a_miss(agent, fake, request):
    topic = request.node.name
    chat(f"Convert 30 degrees from Celsius to Fahrenheit for {topic}")
    for other in (f"Convert 30 degrees from Fahrenheit to Celsius for {topic}",  # the same words, swapped
                  f"Convert 31 degrees from Celsius to Fahrenheit for {topic}",
                  f"Do not convert 30 degrees from Celsius to Fahrenheit for {topic}"):
        headers, answer = chat(other)
        assert headers["x-llm-cache"] == "MISS", other
        assert other.split(" for ")[0] in text(answer)  # the provider's own answer to it


def test_only_an_otherwise_identical_conversation_is_searched(agent, fake, request):
    topic = request.node.name
    chat(f"Name a prime number, {topic}", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": f"Name a prime number, {topic}"}])
    embeds = posts(fake, "/v1/embeddings")
    for system, model in (("You are verbose.", "gpt-4o-mini"), ("You are terse.", "gpt-4o")):
        headers, _ = chat("", model=model, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": f"name a prime number {topic}"}])
        assert headers["x-llm-cache"] == "MISS", (system, model)
    assert posts(fake, "/v1/embeddings") == embeds + 1  # the same turn is embedded once: the call is cached
    headers, _ = chat("", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": f"name a prime number {topic}"}])
    assert headers["x-llm-cache"] == "HIT-SEMANTIC"


def test_a_stream_is_answered_as_a_stream(agent, request):
    topic = request.node.name
    client = anthropic.Anthropic()
    with client.messages.stream(model="claude-test-model", max_tokens=64,
                                messages=[{"role": "user", "content": f"Please list three colours for {topic}"}]) as s:
        first = s.get_final_text()
    with client.messages.stream(model="claude-test-model", max_tokens=64,
                                messages=[{"role": "user", "content": f"list three colours for {topic}!"}]) as s:
        assert s.response.headers["x-llm-cache"] == "HIT-SEMANTIC"
        assert s.response.headers["content-type"].startswith("text/event-stream")
        assert s.get_final_text() == first
    # And a JSON request is answered from the stored stream.
    raw = client.messages.with_raw_response.create(model="claude-test-model", max_tokens=64, messages=[
        {"role": "user", "content": f"list three colours for {topic}"}])
    assert raw.headers["x-llm-cache"] == "HIT-SEMANTIC" and raw.parse().content[0].text == first


def test_a_reported_wrong_semantic_answer_goes_upstream_and_then_is_never_one_again(agent, request):
    topic = request.node.name
    first_headers, first = chat(f"Explain recursion for {topic}")
    key = first_headers["x-llm-cache-key"]
    headers, _ = chat(f"explain recursion for {topic}.")
    assert headers["x-llm-cache"] == "HIT-SEMANTIC" and headers["x-llm-cache-key"] == key
    # The report (the exact tier alone for this request, so its own answer is no semantic candidate).
    reporter = agent_client({"X-LLM-Cache-Semantic-Reject": key, "X-LLM-Cache-Tiers": "exact"})
    headers, fresh = chat(f"explain recursion for {topic}.", client=reporter)
    assert headers["x-llm-cache"] == "MISS" and text(fresh) != text(first)  # asked upstream
    # llm_cache_semantic_block_after=1: that entry is no semantic answer any more, to anyone...
    headers, answer = chat(f"Explain recursion for {topic}!!")
    assert headers["x-llm-cache"] == "MISS" and text(answer) != text(first)
    # ...and its own exact repeats still hit.
    assert chat(f"Explain recursion for {topic}")[0]["x-llm-cache"] == "HIT"


def test_a_rejected_answer_is_never_served_semantically(agent, request):
    topic = request.node.name
    headers, bad = chat(f"Describe a rainbow for {topic}")
    key = headers["x-llm-cache-key"]
    assert chat(f"describe a rainbow for {topic}")[0]["x-llm-cache"] == "HIT-SEMANTIC"
    headers, good = chat(f"Describe a rainbow for {topic}", client=agent_client({"X-LLM-Cache-Reject": key}))
    assert headers["x-llm-cache"] == "MISS" and text(good) != text(bad)  # asked anew, and recorded
    headers, answer = chat(f"DESCRIBE a rainbow for {topic}")
    assert headers["x-llm-cache"] == "HIT-SEMANTIC" and text(answer) == text(good)


def agent_client(headers: dict[str, str]):
    import openai

    return openai.OpenAI(default_headers=headers)


def test_an_ollama_embeddings_endpoint_over_plain_http(tmp_path, certs, fake, monkeypatch, request):
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, extra=options(
        semantic=True, semantic_embedder=f"http://127.0.0.1:{fake.http_port}/api/embed",
        semantic_embedding_model="fake-embed-words"))
    try:
        point_agent_at(proxy, monkeypatch)
        topic = request.node.name
        embeds = posts(fake, "/api/embed")
        first = chat(f"Tell me a fact about owls ({topic})")[1]
        headers, again = chat(f"tell me a fact about owls {topic}")
        assert headers["x-llm-cache"] == "HIT-SEMANTIC" and text(again) == text(first)
        assert posts(fake, "/api/embed") == embeds + 2
    finally:
        proxy.stop()


def test_the_local_embedder_needs_no_endpoint(tmp_path, certs, fake, monkeypatch, request):
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, extra=options(semantic=True))
    try:
        point_agent_at(proxy, monkeypatch)
        topic = request.node.name
        embeds = posts(fake, "/v1/embeddings")
        first_headers, first = chat(f"How do I reverse a list in Python? ({topic})")
        headers, again = chat(f"how do i reverse a list in python ({topic})")
        assert headers["x-llm-cache"] == "HIT-SEMANTIC" and text(again) == text(first)
        assert chat(f"How do I sort a list in Python? ({topic})")[0]["x-llm-cache"] == "MISS"
        assert posts(fake, "/v1/embeddings") == embeds  # nothing was sent anywhere to embed
    finally:
        proxy.stop()


def synthesising_proxy(tmp_path, certs, fake, model: str) -> Mitmdump:
    return Mitmdump(tmp_path, certs=certs, fake=fake, extra=options(
        semantic=True, semantic_embedder=EMBEDDINGS, semantic_embedding_model="fake-embed-words",
        synthesis=True, synthesis_url="https://api.openai.com/v1/chat/completions",
        synthesis_model=model, synthesis_threshold="0.5"))


def test_synthesis_answers_a_near_miss_from_stored_answers_and_stores_nothing(tmp_path, certs, fake, monkeypatch,
                                                                              request):
    proxy = synthesising_proxy(tmp_path, certs, fake, "fake-synthesiser")
    try:
        point_agent_at(proxy, monkeypatch)
        topic = request.node.name
        chat(f"What is the capital of France for {topic}")
        chats = posts(fake, "/v1/chat/completions")
        headers, answer = chat(f"What is the capital of Spain for {topic}")  # close, but another question
        assert headers["x-llm-cache"] == "SYNTHESISED"
        assert headers["x-llm-cache-synthesis-usage"].startswith("fake-synthesiser input=")
        assert posts(fake, "/v1/chat/completions") == chats + 1  # one call: the synthesiser's
        synthesised = fake_last_body(fake)
        assert "capital of France" in synthesised and "capital of Spain" in synthesised
        assert text(answer)  # the synthesiser's answer, in the chat completion the client asked for
        # Never stored: the same request is synthesised again, not an exact hit.
        assert chat(f"What is the capital of Spain for {topic}")[0]["x-llm-cache"] != "HIT"
    finally:
        proxy.stop()


def fake_last_body(fake) -> str:
    return fake.last()["body"]


def test_the_tier_works_on_a_shared_postgresql_cache(tmp_path, certs, fake, monkeypatch, request):
    from tests.support.databases import fresh_database

    url = fresh_database("postgresql", tmp_path)
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, db_url=url, extra=options(
        semantic=True, semantic_embedder=EMBEDDINGS, semantic_embedding_model="fake-embed-words"))
    try:
        point_agent_at(proxy, monkeypatch)
        assert wait_for(lambda: "cache database postgresql" in proxy.text())  # opened off the event loop
        topic = request.node.name
        first = chat(f"Suggest a name for a cat, {topic}")[1]
        headers, again = chat(f"suggest a name for a cat {topic}")
        assert headers["x-llm-cache"] == "HIT-SEMANTIC" and text(again) == text(first)
    finally:
        proxy.stop()


def test_semantic_eval_measures_an_embedder_on_labelled_pairs(semantic_proxy):
    """scripts/llm-cache semantic-eval, as a user runs it: the bundled embedder on the shipped set,
    then an embeddings endpoint reached through the proxy the environment names."""
    import json
    import subprocess

    from tests.support.procs import ROOT, clean_env

    def evaluate(*args: str, **env: str) -> dict:
        result = subprocess.run([str(ROOT / "scripts" / "llm-cache"), "semantic-eval", "--json", *args],
                                capture_output=True, text=True, timeout=300, env=clean_env(**env))
        assert result.returncode == 0, result.stderr
        return {(row["guard"], row["threshold"]): row for row in json.loads(result.stdout)}

    local = evaluate()
    assert local[("strict", 0.75)]["wrong"] == 0 and local[("strict", 0.75)]["right"] > 0
    assert local[("off", 0.75)]["wrong"] > 0
    endpoint = evaluate("--embedder", EMBEDDINGS, "--model", "fake-embed-words",
                        HTTPS_PROXY=semantic_proxy.url, SSL_CERT_FILE=str(semantic_proxy.ca))
    assert endpoint[("off", 0.95)]["wrong"] > 0  # a bag of words cannot tell swapped directions apart
    assert endpoint[("strict", 0.75)]["wrong"] == 0


def test_a_synthesiser_without_an_answer_leaves_an_ordinary_miss(tmp_path, certs, fake, monkeypatch, request):
    proxy = synthesising_proxy(tmp_path, certs, fake, "fake-no-answer")  # the fake's model that finds nothing
    try:
        point_agent_at(proxy, monkeypatch)
        topic = request.node.name
        chat(f"What is the capital of France for {topic}")
        headers, answer = chat(f"What is the capital of Spain for {topic}")
        assert headers["x-llm-cache"] == "MISS" and "capital of Spain" in text(answer)  # the provider's answer
        assert chat(f"What is the capital of Spain for {topic}")[0]["x-llm-cache"] == "HIT"  # and it was recorded
    finally:
        proxy.stop()


def test_every_chat_protocol_gets_semantic_answers(agent, monkeypatch, request):
    """The Responses API (openai SDK) and Gemini (google-genai), beside chat completions and
    Anthropic above: a turn that says the same in the same conversation is answered, JSON or stream."""
    import openai
    from google import genai

    topic = request.node.name
    client = openai.OpenAI()
    first = client.responses.with_raw_response.create(model="gpt-4.1-mini", input=f"List two metals, {topic}")
    again = client.responses.with_raw_response.create(model="gpt-4.1-mini", input=f"list two metals {topic}!")
    assert first.headers["x-llm-cache"] == "MISS" and again.headers["x-llm-cache"] == "HIT-SEMANTIC"
    assert again.parse().output_text == first.parse().output_text

    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyE2E-NOT-A-REAL-KEY-000000000000")
    gemini = genai.Client()
    stored = gemini.models.generate_content(model="gemini-2.5-flash", contents=f"Name two gases, {topic}")
    hit = gemini.models.generate_content(model="gemini-2.5-flash", contents=f"name two gases {topic}")
    assert hit.sdk_http_response.headers["x-llm-cache"] == "HIT-SEMANTIC" and hit.text == stored.text
    chunks = list(gemini.models.generate_content_stream(model="gemini-2.5-flash", contents=f"NAME two gases {topic}"))
    assert chunks[0].sdk_http_response.headers["x-llm-cache"] == "HIT-SEMANTIC"
    assert "".join(c.text for c in chunks) == stored.text


def tool_turn(result: str) -> list[dict]:
    call = {"id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
    return [{"role": "user", "content": "Read the file"}, {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]


def test_a_tool_result_is_answered_semantically_only_when_allowed(agent, tmp_path, certs, fake, monkeypatch, request):
    topic = request.node.name
    chat("", messages=tool_turn(f"The file says hello, {topic}"))
    assert chat("", messages=tool_turn(f"the file says hello {topic}"))[0]["x-llm-cache"] == "MISS"  # default: off
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, extra=options(
        semantic=True, semantic_embedder=EMBEDDINGS, semantic_embedding_model="fake-embed-words",
        semantic_tool_results=True))
    try:
        point_agent_at(proxy, monkeypatch)
        chat("", messages=tool_turn(f"The file says hello, {topic}"))
        assert chat("", messages=tool_turn(f"the file says hello {topic}"))[0]["x-llm-cache"] == "HIT-SEMANTIC"
    finally:
        proxy.stop()


def test_a_turn_with_a_credential_is_never_sent_to_an_embeddings_endpoint(agent, fake, request):
    embeds = posts(fake, "/v1/embeddings")
    headers, _ = chat(f"Why does AKIAQWERTYUIOPASDFGH fail, {request.node.name}?")
    assert headers["x-llm-cache"] == "MISS" and headers["x-llm-cache-store"].startswith("skipped")
    assert posts(fake, "/v1/embeddings") == embeds


def test_an_embedder_url_with_a_credential_is_refused_at_start(tmp_path):
    from tests.support.procs import failed_start

    said = failed_start(tmp_path, "--set", "llm_cache_semantic=true",
                        "--set", "llm_cache_semantic_embedder=https://api.openai.com/v1/embeddings?key=sk-x")
    assert "must not carry a credential" in said and "sk-x" not in said.replace("?key=sk-x", "")
