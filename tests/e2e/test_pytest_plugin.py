"""The pytest plugin as a user's test suite runs it (pytester, in a subprocess): a session records its
LLM calls into a cassette, the next replays them from it with the provider untouched, and a call the
cassette lacks fails with the cache's explanation."""

import orjson
import pytest

from tests.support.procs import ROOT

pytest_plugins = ["pytester"]

INNER_TEST = """
import os
import httpx

def test_chat():
    with httpx.Client(trust_env=True, timeout=20) as client:  # the proxy from the session's environment
        answer = client.post(os.environ["FAKE_URL"], json={"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": os.environ["PROMPT"]}]})
    with open(os.environ["ANSWERS"], "ab") as out:
        out.write(answer.headers.get("x-llm-cache", "-").encode() + b" " + answer.content + b"\\n")
    assert answer.status_code == 200, answer.text
"""


@pytest.fixture
def suite(pytester, fake, monkeypatch, tmp_path):
    pytester.makepyfile(test_llm=INNER_TEST)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("FAKE_URL", f"http://127.0.0.1:{fake.http_port}/v1/chat/completions")
    monkeypatch.setenv("ANSWERS", str(tmp_path / "answers.txt"))
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    def run(mode, prompt="plugin: say hello"):
        monkeypatch.setenv("PROMPT", prompt)
        return pytester.runpytest_subprocess("-p", "llm_cache.pytest_plugin", f"--llm-cache={mode}",
                                             "--llm-cache-cassette=cassettes/llm.jsonl", timeout=120)

    return run


def test_a_session_records_a_cassette_and_the_next_replays_it(suite, pytester, fake, tmp_path):
    before = fake.llm_calls()
    suite("record").assert_outcomes(passed=1)
    assert fake.llm_calls() == before + 1
    cassette = pytester.path / "cassettes" / "llm.jsonl"
    lines = cassette.read_bytes().splitlines()
    assert orjson.loads(lines[0])["cassette"] == "llm-cache" and len(lines) == 2
    assert b"plugin: say hello" in lines[1] and b"authorization" not in lines[1].lower()

    suite("replay").assert_outcomes(passed=1)
    assert fake.llm_calls() == before + 1  # answered from the cassette
    recorded, replayed = (tmp_path / "answers.txt").read_bytes().splitlines()
    assert recorded.startswith(b"MISS ") and replayed.startswith(b"HIT ")
    assert recorded.split(b" ", 1)[1] == replayed.split(b" ", 1)[1]

    missing = suite("replay", prompt="plugin: something never recorded")
    missing.assert_outcomes(failed=1)
    assert "is not in the cache and llm_cache_mode is replay" in missing.stdout.str()
    assert fake.llm_calls() == before + 1
    assert cassette.read_bytes().splitlines() == lines  # replay never writes the cassette
