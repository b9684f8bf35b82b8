"""A hostile or broken client, through a real mitmdump: compression bombs are decoded only up to
the limits and never stall other traffic; odd bytes in headers pass through."""

import ssl
import threading
import time

import httpx
import pytest

from tests.support.bombs import bomb
from tests.support.procs import Mitmdump, wait_for

MIB = 1 << 20


def peak_rss(pid: int) -> int:
    """The process's peak resident memory, in bytes (Linux's VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def proxy(tmp_path, certs, fake):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake)
    yield proxy
    proxy.stop()


def client(proxy: Mitmdump) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                        trust_env=False)


def chat_body(prompt: str, model: str = "gpt-4o-mini") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def answered_meanwhile(proxy: Mitmdump, work) -> tuple[object, list[float]]:
    """Run `work` in a thread; meanwhile, time ordinary requests through the proxy. Returns what
    `work` returned and the latencies."""
    done = threading.Event()
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = work()
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    latencies: list[float] = []
    while not done.is_set() or not latencies:
        started = time.monotonic()
        with client(proxy) as c:  # a new connection each time, as a new agent process opens
            c.get(f"https://api.openai.com/plain-page-{len(latencies)}")
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    assert done.wait(60)
    return result["value"], latencies


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_a_request_bomb_is_forwarded_untouched_as_a_bypass_in_bounded_memory(proxy, encoding):
    wire = bomb(encoding)
    before = peak_rss(proxy.proc.pid)

    def send():
        with client(proxy) as c:
            return c.post("https://api.openai.com/v1/chat/completions", content=wire,
                          headers={"content-type": "application/json", "content-encoding": encoding})

    response, latencies = answered_meanwhile(proxy, send)
    grew = peak_rss(proxy.proc.pid) - before
    assert grew < 512 * MIB, f"mitmdump grew by {grew // MIB} MiB"
    assert max(latencies) < 2.0, f"other requests waited up to {max(latencies):.1f} s"
    assert response.status_code == 200 and response.text.startswith("non-json post")  # forwarded as it came
    assert response.headers["x-llm-cache"] == "BYPASS"
    assert "request over llm_cache_max_request_bytes" in response.headers["x-llm-cache-reason"]


def test_a_response_bomb_is_passed_on_and_not_recorded_in_bounded_memory(proxy):
    before = peak_rss(proxy.proc.pid)

    def send():
        with client(proxy) as c:
            request = c.build_request("POST", "https://api.openai.com/v1/chat/completions",
                                      json=chat_body("boom", model="fake-bomb"))
            response = c.send(request, stream=True)
            size = sum(len(chunk) for chunk in response.iter_raw())  # the client gets the bytes as sent
            return response, size

    (response, size), latencies = answered_meanwhile(proxy, send)
    grew = peak_rss(proxy.proc.pid) - before
    assert grew < 512 * MIB, f"mitmdump grew by {grew // MIB} MiB"
    assert max(latencies) < 2.0, f"other requests waited up to {max(latencies):.1f} s"
    assert size == len(bomb("gzip")) and response.headers["content-encoding"] == "gzip"
    assert response.headers["x-llm-cache"] == "MISS"
    assert response.headers["x-llm-cache-store"].startswith("skipped: response over llm_cache_max_response_bytes")


def test_a_keyed_header_that_is_not_utf8_passes_through_with_one_log_line(proxy):
    with client(proxy) as c:
        for _ in range(3):
            response = c.post("https://api.anthropic.com/v1/messages", json={
                "model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                headers={"anthropic-version": b"2023-06-01\xff"})
            assert response.status_code == 200 and "x-llm-cache" not in response.headers
    log = proxy.text()
    assert log.count("reading the request headers failed (the anthropic-version header is not UTF-8)") == 1
    assert "Traceback" not in log


@pytest.mark.parametrize("first, second", [
    ({"authorization": "Bearer shared", "x-api-key": "key-of-alice"},
     {"authorization": "Bearer shared", "x-api-key": "key-of-bob"}),
    ({"authorization": "", "x-api-key": "key-of-alice"}, {"authorization": "", "x-api-key": "key-of-bob"}),
    ({"ocp-apim-subscription-key": "sub-of-alice"}, {"ocp-apim-subscription-key": "sub-of-bob"}),
    ({"x-custom-token": "token-of-alice"}, {"x-custom-token": "token-of-bob"}),
], ids=["same-authorization", "empty-authorization", "azure-subscription-key", "any-token-header"])
def test_the_credential_scope_covers_every_credential_a_request_carries(tmp_path, certs, fake, first, second):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake, extra=["--set", "llm_cache_scope=credential"])
    try:
        body = chat_body(f"who am I {sorted(first)}")
        with client(proxy) as c:
            url = "https://api.openai.com/v1/chat/completions"
            alice = [c.post(url, json=body, headers=first) for _ in range(2)]
            bob = c.post(url, json=body, headers=second)
        assert [r.headers["x-llm-cache"] for r in alice] == ["MISS", "HIT"]
        assert bob.headers["x-llm-cache"] == "MISS", "one credential's answer served to another"
        assert bob.json()["choices"][0]["message"]["content"] != alice[0].json()["choices"][0]["message"]["content"]
    finally:
        proxy.stop()
    stored = b"".join(f.read_bytes() for f in proxy.db_path.parent.glob("cache.sqlite3*"))
    for value in (*first.values(), *second.values()):
        assert not value or value.encode() not in stored


def test_the_cache_files_are_readable_by_their_owner_only(proxy):
    with client(proxy) as c:
        c.post("https://api.openai.com/v1/chat/completions", json=chat_body("private prompt"))
    assert wait_for(lambda: (proxy.db_path.parent / "cache.sqlite3-wal").exists())
    for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"):
        assert (proxy.db_path.parent / name).stat().st_mode & 0o777 == 0o600, name


def test_the_caches_own_log_lines_show_no_credential(tmp_path, certs, fake):
    secrets = {"authorization": "Bearer sk-proj-LOGSECRET00000000001", "x-api-key": "sk-ant-LOGSECRET000002",
               "api-key": "azure0LOGSECRET0003", "x-goog-api-key": "AIzaLOGSECRET00000000000000000000004"}
    query_key = "AIzaLOGSECRETQUERY0000000000000000005"
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake, extra=["-v", "--set", "llm_cache_mode=replay"])
    try:
        with client(proxy) as c:
            answers = [
                c.post("https://api.openai.com/v1/chat/completions", json=chat_body("log me"), headers=secrets),
                c.post(f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
                       f"?key={query_key}", json={"contents": [{"role": "user", "parts": [{"text": "log me"}]}]})]
    finally:
        proxy.stop()
    assert [a.status_code for a in answers] == [400, 400] and "generateContent" in answers[1].text
    ours = [line for line in proxy.log if "llm-cache" in line.lower()] + [a.text for a in answers]
    assert len(ours) > 4  # the start lines, the answers' headers as mitmdump -v prints them, the answers
    for line in ours:
        for secret in [*secrets.values(), query_key]:
            assert secret[4:16] not in line and secret[-8:] not in line, line


def test_a_50_mb_stream_is_recorded_in_seconds_and_a_json_request_from_it_stalls_nothing(proxy):
    messages = [{"role": "user", "content": "a very long answer"}]
    started = time.monotonic()
    with client(proxy) as c:
        with c.stream("POST", "https://api.openai.com/v1/chat/completions",
                      json={"model": "fake-huge", "messages": messages, "stream": True}) as streamed:
            size = sum(len(chunk) for chunk in streamed.iter_bytes())
    assert size > 50 * MIB
    assert wait_for(lambda: entry_written(proxy), timeout=60), "the 50 MB stream was not written within a minute"
    recorded_after = time.monotonic() - started

    def as_json():
        with client(proxy) as c:
            return c.post("https://api.openai.com/v1/chat/completions", json={"model": "fake-huge",
                                                                              "messages": messages})

    answer, latencies = answered_meanwhile(proxy, as_json)
    assert answer.headers["x-llm-cache"] == "HIT"
    assert len(answer.json()["choices"][0]["message"]["content"]) == 25_000 * 2000
    # Reading the 100 MB row and sending 50 MB take the loop some hundreds of ms; assembling did 4.8 s
    # for 20 MB before the answer was assembled when it was written.
    assert max(latencies) < 2.0, f"other requests waited up to {max(latencies):.1f} s"
    print(f"50 MB stream recorded {recorded_after:.1f} s after it started; other requests during the JSON hit: "
          f"at most {max(latencies) * 1000:.0f} ms")


def entry_written(proxy: Mitmdump) -> bool:
    """Whether the huge stream's entry is in the database (a streamed miss's outcome is in its
    comment, not in a header)."""
    import sqlite3

    with sqlite3.connect(proxy.db_path) as db:
        return db.execute("select count(*) from cache_entry where model = 'fake-huge'").fetchone()[0] == 1
