"""Restarts, offline replay, credentials and broken databases, each with proxies of its own."""

import os
import socket

import anthropic
import openai
import pytest

from cache_models import CacheEntry, open_database
from tests.support.procs import Mitmdump

OPENAI_KEY = "sk-proj-DURABLESECRETOPENAI"
ANTHROPIC_KEY = "sk-ant-DURABLESECRETANTHROPIC"


@pytest.fixture
def agent_env(monkeypatch):
    """Point the SDKs at a given proxy through the environment alone."""
    for name in ("NO_PROXY", "no_proxy", "SSL_CERT_DIR", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)

    def use(proxy):
        for name, value in proxy.client_env().items():
            monkeypatch.setenv(name, value)

    return use


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_run(prompt):
    """What an agent does: a JSON and a streamed call to each provider; returns what it saw."""
    oa, an = openai.OpenAI(max_retries=0), anthropic.Anthropic(max_retries=0)
    messages = [{"role": "user", "content": prompt}]
    # Streams get prompts of their own: otherwise they would be served from the JSON entries.
    stream_messages = [{"role": "user", "content": prompt + " (streamed)"}]
    chat = oa.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    stream = oa.chat.completions.create(model="gpt-4o-mini", messages=stream_messages, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    message = an.messages.with_raw_response.create(model="claude-test-model", max_tokens=64, messages=messages)
    with an.messages.stream(model="claude-test-model", max_tokens=64, messages=stream_messages) as s:
        anthropic_streamed = "".join(s.text_stream)
    seen = {
        "chat": chat.parse().choices[0].message.content,
        "chat-stream": streamed,
        "message": message.parse().content[0].text,
        "message-stream": anthropic_streamed,
    }
    cache_headers = [chat.headers["x-llm-cache"], stream.response.headers["x-llm-cache"],
                     message.headers["x-llm-cache"], s.response.headers["x-llm-cache"]]
    return seen, cache_headers


def test_a_restart_keeps_the_cache_and_replays_work_offline(tmp_path, certs, fake, agent_env):
    recorder = Mitmdump(tmp_path, certs=certs, fake=fake)
    agent_env(recorder)
    before = fake.calls()
    recorded, headers = agent_run("offline please")
    assert headers == ["MISS"] * 4 and fake.calls() - before == 4
    recorder.stop()

    # Same database, new process, and every upstream connection now goes to a closed port.
    offline = Mitmdump(tmp_path, certs=certs, upstream_https=closed_port())
    try:
        agent_env(offline)
        replayed, headers = agent_run("offline please")
        assert headers == ["HIT"] * 4
        assert replayed == recorded
        with pytest.raises(openai.APIStatusError) as error:  # proof that upstream really is unreachable
            openai.OpenAI(max_retries=0).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "never recorded"}])
        assert error.value.status_code == 502
    finally:
        offline.stop()


def test_no_credential_ever_reaches_the_database_file(tmp_path, certs, fake, agent_env):
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake)
    agent_env(proxy)
    agent_run("keep my keys secret")
    proxy.stop()  # SIGTERM: the writer flushes, SQLite checkpoints
    files = list(tmp_path.glob("cache.sqlite3*"))
    data = b"".join(f.read_bytes() for f in files)
    assert b"keep my keys secret" in data  # the entries are there...
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[8:], ANTHROPIC_KEY[7:]):
        assert secret.encode() not in data  # ...the keys are not
    assert OPENAI_KEY not in proxy.text() and ANTHROPIC_KEY not in proxy.text()


def test_an_unusable_database_degrades_to_plain_pass_through(tmp_path, certs, fake, agent_env):
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"not a database " * 1000)
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, db_url=f"sqlite:///{corrupt}")
    try:
        agent_env(proxy)
        client = openai.OpenAI(max_retries=0)
        before = fake.calls()
        answers = [client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "still works"}]) for _ in range(3)]
        assert fake.calls() - before == 3
        assert all(a.status_code == 200 and "x-llm-cache" not in a.headers for a in answers)
        failures = [line for line in proxy.log if "opening the cache database" in line]
        assert len(failures) == 1 and "passing the request through uncached" in failures[0]
    finally:
        proxy.stop()
    assert corrupt.read_bytes() == b"not a database " * 1000  # nothing was written into it


def test_a_team_shares_one_postgresql_cache(tmp_path, certs, fake, agent_env):
    url = os.environ.get("LLM_CACHE_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL: .ci/run exports LLM_CACHE_TEST_POSTGRES")
        pytest.skip("no PostgreSQL here: .ci/postgres.sh starts one and sets LLM_CACHE_TEST_POSTGRES")
    open_database(url).drop_tables([CacheEntry])
    # Two people's proxies, one database: what one records, the other replays offline.
    alice = Mitmdump(tmp_path / "alice", certs=certs, fake=fake, db_url=url)
    bob = Mitmdump(tmp_path / "bob", certs=certs, upstream_https=closed_port(), db_url=url)
    try:
        agent_env(alice)
        recorded, headers = agent_run("shared by the team")
        assert headers == ["MISS"] * 4
        alice.stop()
        agent_env(bob)
        replayed, headers = agent_run("shared by the team")
        assert headers == ["HIT"] * 4 and replayed == recorded
    finally:
        alice.stop()
        bob.stop()


def test_the_key_is_the_url_the_client_called_not_the_rewritten_one(tmp_path, certs, fake, agent_env, monkeypatch):
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake,
                     extra=["--map-remote", r"|//api\.openai\.com/|//api.groq.com/"])
    try:
        agent_env(proxy)

        def call(base_url):
            monkeypatch.setenv("OPENAI_BASE_URL", base_url)
            return openai.OpenAI(max_retries=0).chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "mapped"}]).headers["x-llm-cache"]

        assert call("https://api.openai.com/v1") == "MISS"  # went to api.groq.com, keyed as api.openai.com
        assert call("https://api.groq.com/v1") == "MISS"  # the rewritten URL is another key
        assert call("https://api.openai.com/v1") == "HIT"
    finally:
        proxy.stop()
