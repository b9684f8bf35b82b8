"""scripts/llm-cache as a user runs it, on a cache a real mitmdump recorded: stats, ls, show, export; then
the cassette imported into a new SQLite file that a new mitmdump, in replay mode and with no provider
to reach, answers the same requests from, byte for byte."""

import json
import ssl
import subprocess

import httpx
import orjson
import pytest

from tests.support.procs import ROOT, Mitmdump, clean_env

SECRETS = ("sk-proj-CLIE2ESECRET", "sk-ant-CLIE2ESECRET")
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def requests():
    """(url, headers, body): a JSON chat, a streamed chat with usage, an Anthropic stream (named events)."""
    openai = {"content-type": "application/json", "authorization": f"Bearer {SECRETS[0]}"}
    anthropic = {"content-type": "application/json", "x-api-key": SECRETS[1], "anthropic-version": "2023-06-01"}
    chat = "https://api.openai.com/v1/chat/completions"

    def messages(prompt):
        return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": prompt}]

    return [
        (chat, openai, {"model": "gpt-4o-mini", "messages": messages("cli e2e: the JSON one")}),
        (chat, openai, {"model": "gpt-4o-mini", "messages": messages("cli e2e: the streamed one"), "stream": True,
                        "stream_options": {"include_usage": True}}),
        ("https://api.anthropic.com/v1/messages", anthropic,
         {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
          "messages": [{"role": "user", "content": "cli e2e: the Anthropic stream"}]}),
    ]


def send(proxy, url, headers, body):
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), trust_env=False,
                      timeout=20) as client:
        answer = client.post(url, headers=headers, content=orjson.dumps(body))
    return answer.status_code, answer.headers, answer.content


def llm_cache(*args, db):
    result = subprocess.run([str(ROOT / "scripts" / "llm-cache"), *map(str, args), "--db", f"sqlite:///{db}"],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, certs, fake):
    """A cache recorded through a real mitmdump: each request sent twice (a miss, then a hit).
    Returns (its database file, {key: (miss bytes, hit bytes)} in the order of `requests()`)."""
    proxy = Mitmdump(tmp_path_factory.mktemp("record"), certs=certs, fake=fake)
    answers = {}
    try:
        for url, headers, body in requests():
            _, miss_headers, miss = send(proxy, url, headers, body)
            _, hit_headers, hit = send(proxy, url, headers, body)
            assert (miss_headers["x-llm-cache"], hit_headers["x-llm-cache"]) == ("MISS", "HIT")
            answers[hit_headers["x-llm-cache-key"]] = (miss, hit)
    finally:
        proxy.stop()  # the hit counts reach the database when the proxy stops
    return proxy.db_path, answers


def test_stats_ls_and_show(recorded):
    db, answers = recorded
    stats = json.loads(llm_cache("stats", "--json", db=db))
    assert (stats["entries"], stats["hits"]) == (3, 3)
    models = {m["model"]: m for m in stats["models"]}
    assert models["gpt-4o-mini"]["hits"] == 2 and models["gpt-4o-mini"]["input_tokens_saved"] > 0
    assert models["gpt-4o-mini"]["money_saved_usd"] > 0  # genai-prices knows it
    assert {h["host"] for h in stats["hosts"]} == {"api.openai.com", "api.anthropic.com"}
    # the proxy counted each request's miss and hit: the hit rate
    assert (stats["counted"]["hits"], stats["counted"]["misses"], stats["counted"]["hit_rate"]) == (3, 3, 0.5)
    assert "hit rate  50.0%: 3 hits, 3 misses went upstream" in llm_cache("stats", db=db)

    listed = [json.loads(line) for line in llm_cache("ls", "--json", db=db).splitlines()]
    assert sorted(row["key"] for row in listed) == sorted(answers)
    assert sorted((row["family"], row["is_stream"]) for row in listed) == [
        ("anthropic.messages", True), ("openai.chat", False), ("openai.chat", True)]
    only = [json.loads(line) for line in llm_cache("ls", "--json", "--text", "THE STREAMED ONE", db=db).splitlines()]
    assert len(only) == 1 and only[0]["is_stream"] is True

    shown = llm_cache("show", only[0]["key"][:10], db=db)
    assert "[system]\n  Answer briefly." in shown and "[user]\n  cli e2e: the streamed one" in shown
    assert "(a stream, shown assembled)" in shown and "cli e2e: the streamed one" in shown.split("── answer")[1]


def test_a_cassette_replays_byte_for_byte_through_a_new_proxy(recorded, tmp_path, fake):
    db, answers = recorded
    cassette = tmp_path / "run.jsonl"
    assert "exported 3 entries" in llm_cache("export", cassette, db=db)
    text = cassette.read_text()
    entries = [json.loads(line) for line in text.splitlines()[1:]]
    assert [e["key"] for e in entries] == sorted(answers)
    assert all(e["body"].get("events") for e in entries if e["is_stream"])  # streams are readable events
    for entry in entries:
        names = {n.lower() for n, _ in entry["headers"]} | {n.lower() for n in entry["request"]["headers"]}
        assert not names & set(CREDENTIAL_HEADERS)
    assert not any(secret in text for secret in SECRETS)

    replayed_db = tmp_path / "replay.sqlite3"
    assert "imported 3 entries" in llm_cache("import", cassette, db=replayed_db)
    # No route to the fake provider: a request the cache could not answer would fail, not reach it.
    replayer = Mitmdump(tmp_path / "replay", db_url=f"sqlite:///{replayed_db}",
                        extra=["--set", "llm_cache_mode=replay"])
    calls = fake.calls()
    try:
        for (url, headers, body), (key, (miss, hit)) in zip(requests(), answers.items(), strict=True):
            status, replay_headers, replay = send(replayer, url, headers, body)
            assert (status, replay_headers["x-llm-cache"], replay_headers["x-llm-cache-key"]) == (200, "HIT", key)
            assert replay == hit == miss
        status, missed, _ = send(replayer, *requests()[0][:2], {"model": "gpt-4o-mini", "messages": []})
        assert status == 400 and missed["x-llm-cache"] == "MISS"  # replay mode: nothing else was answered
    finally:
        replayer.stop()
    assert fake.calls() == calls
    assert not any(secret.encode() in replayed_db.read_bytes() for secret in SECRETS)
