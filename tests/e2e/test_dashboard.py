"""The dashboard through a real mitmdump: `GET http://llm-cache.local/` and `/api/stats.json` with
httpx through the proxy, after misses and hits through the fake provider."""

import re
import shutil
import ssl
import subprocess

import httpx
import pytest
from mitmproxy.test import taddons, tflow, tutils

import addon as llm_addon

CREDENTIAL = "sk-proj-DASHBOARDSECRET"
PROMPTS = ("dashboard prompt alpha", "dashboard prompt beta")


def client(proxy) -> httpx.Client:
    trusted = ssl.create_default_context(cafile=proxy.ca)
    return httpx.Client(proxy=proxy.url, verify=trusted, trust_env=False, timeout=20)


def ask(c: httpx.Client, prompt: str) -> httpx.Response:
    response = c.post("https://api.openai.com/v1/chat/completions", headers={"authorization": f"Bearer {CREDENTIAL}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
    assert response.status_code == 200
    return response


@pytest.fixture(scope="module")
def recorded(proxy):
    """Two misses, then three hits, through the proxy: the keys of the two entries."""
    with client(proxy) as c:
        answers = [ask(c, PROMPTS[n]) for n in (0, 1, 0, 0, 1)]
    assert [a.headers["x-llm-cache"] for a in answers] == ["MISS", "MISS", "HIT", "HIT", "HIT"]
    return [a.headers["x-llm-cache-key"] for a in answers[:2]]


def test_the_page_shows_the_counts_without_going_upstream(proxy, fake, recorded):
    before = fake.calls()
    with client(proxy) as c:
        html = c.get("http://llm-cache.local/")
        doc = c.get("http://llm-cache.local/api/stats.json")
    assert fake.calls() == before  # answered by the proxy itself
    assert (html.status_code, doc.status_code) == (200, 200)
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert doc.headers["content-type"] == "application/json"
    stats = dict(re.findall(r'data-stat="(\w+)">([^<]*)<', html.text))
    assert (stats["hits"], stats["misses"], stats["hit_rate"], stats["stored"]) == ("3", "2", "60.0%", "2")
    assert '<rect class="hits"' in html.text and "<script" not in html.text
    data = doc.json()
    assert data["window"] == {"days": 30, "hits": 3, "misses": 2, "hit_rate": 0.6}
    assert data["counted"] == {"hits": 3, "misses": 2, "hit_rate": 0.6}
    assert sorted(e["key"] for e in data["recent"]) == sorted(key[:12] for key in recorded)
    assert all(key[:12] in html.text for key in recorded)
    [model] = data["models"]
    assert (model["model"], model["hits"]) == ("gpt-4o-mini", 3) and model["input_tokens_saved"] > 0
    assert data["writes"]["stored"] == 2 and data["writes"]["lost"] == 0
    for text in (html.text, doc.text):
        assert CREDENTIAL not in text and "DASHBOARDSECRET" not in text
        assert not any(prompt in text for prompt in PROMPTS)


def test_other_paths_and_methods(proxy, fake):
    before = fake.calls()
    with client(proxy) as c:
        missing = c.get("http://llm-cache.local/admin")
        posted = c.post("http://llm-cache.local/api/stats.json", content=b"{}")
    assert (missing.status_code, posted.status_code) == (404, 405)
    assert missing.text.count("\n") == 1 and posted.headers["allow"] == "GET"
    assert fake.calls() == before


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_through_the_proxy(proxy, recorded):
    curl = shutil.which("curl")
    assert curl is not None
    out = subprocess.run([curl, "-sS", "--max-time", "20", "-x", proxy.url, "http://llm-cache.local/api/stats.json"],
                         capture_output=True, check=True, text=True, env={})
    assert '"hit_rate"' in out.stdout


# The proxy above listens on 127.0.0.1 only, so no test client can come from elsewhere: the rule
# for other clients goes through the addon itself, with the client's address set on the flow.

def dashboard_flow(peer: str, host: str = "llm-cache.local"):
    flow = tflow.tflow(req=tutils.treq(method=b"GET", scheme=b"http", host=host, port=80, path=b"/api/stats.json",
                                       content=b""))
    flow.client_conn.peername = (peer, 50000)
    return flow


async def test_a_client_off_loopback_is_refused_unless_its_network_is_allowed(tmp_path):
    cache = llm_addon.LLMCache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, confdir=str(tmp_path))
        refused = dashboard_flow("192.168.0.7")
        await cache.request(refused)
        assert refused.response.status_code == 403
        assert refused.response.text == ("llm-cache dashboard: 192.168.0.7 is not a loopback client and not in "
                                         "llm_cache_dashboard_clients\n")

        tctx.configure(cache, llm_cache_dashboard_clients=["192.168.0.0/16"])
        allowed = dashboard_flow("192.168.0.7")
        await cache.request(allowed)
        assert allowed.response.status_code == 200 and allowed.response.json()["entries"] == 0

        tctx.configure(cache, llm_cache_dashboard_host="")  # no dashboard: the request goes its way
        passed = dashboard_flow("127.0.0.1")
        assert cache.request(passed) is None and passed.response is None
        cache.done()
