"""The semantic tier through mitmproxy's test helpers: a recorded miss keeps its turn's embedding, a
paraphrase in the same conversation is answered from it and marked for mitmweb, and a failing
embedder leaves the request the ordinary miss it was, with one log line."""

import asyncio
import io
import logging

import orjson
import pytest
from mitmproxy import io as mitmproxy_io
from mitmproxy.test import taddons

import addon as llm_addon
import cache_models
from llm_cache import embedders, messages
from llm_cache.vector_index import VectorIndex
from tests.addon.test_addon import COMPLETION, llm_flow, upstream


def chat(text: str, system: str = "Be brief.") -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": system},
                                                  {"role": "user", "content": text}]}


@pytest.fixture
def cache(tmp_path):
    cache = llm_addon.LLMCache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, confdir=str(tmp_path), llm_cache_semantic=True)
        yield cache
        cache.done()


def send(cache, flow):
    cache.requestheaders(flow)
    later = cache.request(flow)
    if later is not None:  # the semantic tier embeds on a thread: the hook waits for it
        asyncio.run(later)
    return flow


def test_a_paraphrase_is_answered_from_the_recorded_miss(cache):
    miss = send(cache, llm_flow(chat("How do I reverse a list in Python?")))
    assert miss.response is None and miss.metadata["llm_cache"]["status"] == "MISS"
    upstream(cache, miss, body=orjson.dumps(COMPLETION))
    key = miss.metadata["llm_cache"]["request_key"]
    (vector,) = cache_models.CacheVector.select().where(cache_models.CacheVector.key == key)
    assert vector.text == "How do I reverse a list in Python?" and len(vector.vector) == 256 * 4

    hit = send(cache, llm_flow(chat("how do i reverse a list in python")))
    assert orjson.loads(hit.response.content) == COMPLETION
    assert hit.response.headers["X-LLM-Cache"] == "HIT-SEMANTIC"
    assert hit.response.headers["X-LLM-Cache-Key"] == key
    similarity = float(hit.response.headers["X-LLM-Cache-Similarity"])
    assert 0.75 <= similarity <= 1.0
    assert hit.marked == messages.MARK_HIT
    outcome, similar, age, short = hit.comment.split(" · ")
    assert outcome == "HIT-SEMANTIC" and similar.startswith("similarity ") and (age, short) == ("age 0s", key[:12])
    assert abs(float(similar.split()[1]) - similarity) < 0.001
    assert hit.is_replay == "response"
    # Another system prompt is another conversation: never searched.
    assert send(cache, llm_flow(chat("how do i reverse a list in python", system="Be thorough."))).response is None


def test_the_recorded_embedding_is_plain_flow_data(cache):
    flow = send(cache, llm_flow(chat("What is a closure?")))
    saved = io.BytesIO()
    mitmproxy_io.FlowWriter(saved).add(flow)
    saved.seek(0)
    (loaded,) = mitmproxy_io.FlowReader(saved).stream()
    assert tuple(loaded.metadata["llm_cache"]["semantic"])[2] == "What is a closure?"


def test_a_failing_embedder_leaves_an_ordinary_miss(cache, caplog, monkeypatch):
    def broken(self, text):
        raise OSError("embedder down")

    monkeypatch.setattr(embedders.LocalEmbedder, "embed", broken)
    with caplog.at_level(logging.WARNING):
        flows = [send(cache, llm_flow(chat(f"question {n}"))) for n in range(3)]
    assert all(f.response is None and f.metadata["llm_cache"]["status"] == "MISS" for f in flows)
    lines = [r for r in caplog.records if "embedder down" in r.getMessage()]
    assert len(lines) == 1 and "the semantic lookup" in lines[0].getMessage()
    upstream(cache, flows[0], body=orjson.dumps(COMPLETION))
    assert flows[0].response.headers["X-LLM-Cache-Store"] == "stored"  # recorded, without a vector


def test_a_request_may_ask_for_the_exact_tier_alone(cache):
    miss = send(cache, llm_flow(chat("Name a colour")))
    upstream(cache, miss, body=orjson.dumps(COMPLETION))
    exact = send(cache, llm_flow(chat("name a colour"), extra_headers=[(b"x-llm-cache-tiers", b"exact")]))
    assert exact.response is None and "x-llm-cache-tiers" not in exact.request.headers


def test_a_semantic_answer_obeys_the_requests_controls_and_the_mode(cache):
    miss = send(cache, llm_flow(chat("Name a river in Europe")))
    upstream(cache, miss, body=orjson.dumps(COMPLETION))
    key = miss.metadata["llm_cache"]["request_key"]
    # (each request its own paraphrase: one left in flight would hold identical ones, single flight)
    assert send(cache, llm_flow(chat("name a river in europe"))).response.headers["X-LLM-Cache"] == "HIT-SEMANTIC"
    # max-age: the stored answer is too old for this request (as for an exact hit)
    young = send(cache, llm_flow(chat("Name a river in Europe!"), extra_headers=[(b"cache-control", b"max-age=0")]))
    assert young.response is None
    # the request reports that very answer as bad: never served to it, even once the context is read
    # again from the database before the writer has deleted the entry
    cache.store.vectors = VectorIndex(cache_models.SIMILAR_AT_MOST, refresh=0)
    reporting = send(cache, llm_flow(chat("please name a river in europe"),
                                     extra_headers=[(b"x-llm-cache-reject", key.encode())]))
    assert reporting.response is None


def test_a_replay_is_exact(cache):
    miss = send(cache, llm_flow(chat("Name a mountain in Asia")))
    upstream(cache, miss, body=orjson.dumps(COMPLETION))
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_mode="replay")
        replayed = send(cache, llm_flow(chat("name a mountain in asia")))
    assert replayed.response.status_code == 400 and replayed.response.headers["X-LLM-Cache"] == "MISS"
