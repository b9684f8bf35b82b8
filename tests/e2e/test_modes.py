"""Record modes through real mitmdump processes sharing one cache, with the real SDKs."""

import time

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.e2e.control_helpers import chat, options, point_agent_at, text
from tests.support.procs import Mitmdump, failed_start


@pytest.fixture
def start(tmp_path, certs, fake):
    started: list[Mitmdump] = []
    db = f"sqlite:///{tmp_path}/shared.sqlite3"

    def start(**opts) -> Mitmdump:
        proxy = Mitmdump(tmp_path / f"proxy{len(started)}", certs=certs, fake=fake, db_url=db, extra=options(**opts))
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def test_replay_answers_hits_and_fails_a_miss_loudly_naming_the_closest_request(start, fake, monkeypatch, prompt):
    recorder = start()
    point_agent_at(recorder, monkeypatch)
    chat(f"{prompt} at 10:01", temperature=0)
    anthropic.Anthropic().messages.create(model="claude-x", max_tokens=5,
                                          messages=[{"role": "user", "content": prompt}])
    recorder.stop()  # done: everything is written

    point_agent_at(start(mode="replay"), monkeypatch)
    before = fake.calls()
    headers, _ = chat(f"{prompt} at 10:01", temperature=0)
    assert headers["x-llm-cache"] == "HIT"
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as miss:
        chat(f"{prompt} at 10:02", temperature=0)
    assert time.monotonic() - started < 1.0, "an SDK must not retry a replay miss"
    assert miss.value.status_code == 400 and miss.value.response.headers["x-llm-cache"] == "MISS"
    message = miss.value.body["message"]
    assert "is not in the cache and llm_cache_mode is replay" in message
    assert "differs at: messages[0].content." in message
    with pytest.raises(anthropic.APIStatusError) as anthropic_miss:
        anthropic.Anthropic().messages.create(model="claude-x", max_tokens=5,
                                              messages=[{"role": "user", "content": prompt + "?"}])
    assert anthropic_miss.value.status_code == 400
    assert "differs at: messages[0].content" in str(anthropic_miss.value)
    # google-genai retries 408, 429 and 5xx when retries are on (measured: a 504 five times over
    # ~18 s); a 400 it raises at once.
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyE2ESECRETGEMINIKEY0123456789")
    gemini = genai.Client(http_options=genai_types.HttpOptions(retry_options=genai_types.HttpRetryOptions()))
    started = time.monotonic()
    with pytest.raises(genai_errors.ClientError) as gemini_miss:
        gemini.models.generate_content(model="gemini-2.5-flash", contents=f"{prompt} gemini")
    assert time.monotonic() - started < 2.0 and gemini_miss.value.code == 400
    assert "is not in the cache and llm_cache_mode is replay" in str(gemini_miss.value)
    assert fake.calls() == before, "replay never contacts an upstream"


def test_readonly_refresh_writeonly_and_off(start, fake, monkeypatch, prompt):
    point_agent_at(start(), monkeypatch)
    _, recorded = chat(prompt)

    readonly = start(mode="readonly")
    point_agent_at(readonly, monkeypatch)
    headers, hit = chat(prompt)
    assert headers["x-llm-cache"] == "HIT" and text(hit) == text(recorded)
    for _ in range(2):
        headers, _ = chat(prompt + " new")
        assert headers["x-llm-cache"] == "MISS"
        assert headers["x-llm-cache-store"] == "skipped: llm_cache_mode is readonly"

    refresh = start(mode="refresh")
    point_agent_at(refresh, monkeypatch)
    headers, refreshed = chat(prompt)
    assert (headers["x-llm-cache"], headers["x-llm-cache-store"]) == ("MISS", "stored")
    assert text(refreshed) != text(recorded)
    refresh.stop()

    writeonly = start(mode="writeonly")
    point_agent_at(writeonly, monkeypatch)
    headers, written = chat(prompt)
    assert (headers["x-llm-cache"], headers["x-llm-cache-store"]) == ("MISS", "stored")
    writeonly.stop()

    point_agent_at(start(mode="off"), monkeypatch)
    before = fake.calls()
    headers, _ = chat(prompt)
    assert "x-llm-cache" not in headers and fake.calls() == before + 1

    point_agent_at(readonly, monkeypatch)
    headers, latest = chat(prompt)
    assert headers["x-llm-cache"] == "HIT" and text(latest) == text(written)


def test_an_invalid_mode_stops_mitmdump_listing_the_valid_ones(tmp_path):
    output = failed_start(tmp_path, "--set", "llm_cache_mode=playback")
    assert "llm_cache_mode must be one of record, replay, refresh, readonly, writeonly, off; got 'playback'" in output
