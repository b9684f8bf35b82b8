"""A team's shared PostgreSQL cache in trouble, through a real mitmdump: a frozen server never holds
anyone's traffic (lookups are bounded, other traffic untouched), and a server that went away and
came back is used again without a restart. The cluster is the test's own (tests/support/postgres)."""

import os
import socket
import ssl
import time

import httpx
import pytest

from tests.support.postgres import Cluster, binaries
from tests.support.procs import Mitmdump, wait_for

URL = "https://api.openai.com/v1/chat/completions"


@pytest.fixture
def cluster():
    if binaries() is None:
        message = "no PostgreSQL here (apt-get install postgresql; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster()
    yield cluster
    cluster.remove()


def ask(proxy: Mitmdump, prompt: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                      trust_env=False) as c:
        response = c.post(URL, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
    return response, time.monotonic() - started


def fetch(proxy: Mitmdump) -> float:
    started = time.monotonic()
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                      trust_env=False) as c:
        assert c.get("https://api.openai.com/some/page").status_code == 200
    return time.monotonic() - started


def test_a_frozen_server_never_holds_the_traffic(tmp_path, certs, fake, cluster):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake, db_url=cluster.url)
    try:
        assert wait_for(lambda: "cache database postgresql" in proxy.text())
        first, _ = ask(proxy, "frozen?")
        assert first.headers["x-llm-cache-store"] == "stored"
        assert ask(proxy, "frozen?")[0].headers["x-llm-cache"] == "HIT"
        cluster.freeze()
        try:
            assert fetch(proxy) < 1.0, "a plain request waited for the database"
            passed, took = ask(proxy, "frozen?")
            assert took < 2.0 and passed.status_code == 200
            assert "x-llm-cache" not in passed.headers  # passed through uncached
            fresh, took = ask(proxy, "a new one, frozen")
            assert took < 2.0 and fresh.status_code == 200
            assert "the cache lookup failed (no answer within 200 ms); passing the request through" in proxy.text()
        finally:
            cluster.thaw()
        assert wait_for(lambda: ask(proxy, "frozen?")[0].headers.get("x-llm-cache") == "HIT", timeout=30)
    finally:
        proxy.stop()


def test_a_server_that_comes_back_is_used_again_without_a_restart(tmp_path, certs, fake, cluster):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake, db_url=cluster.url)
    try:
        assert wait_for(lambda: "cache database postgresql" in proxy.text())
        assert ask(proxy, "before")[0].headers["x-llm-cache-store"] == "stored"
        cluster.stop()
        during, took = ask(proxy, "during")
        assert during.status_code == 200 and took < 5.0
        assert fetch(proxy) < 1.0
        cluster.start()
        started = time.monotonic()

        def works() -> bool:
            response, _ = ask(proxy, f"after {time.monotonic()}")
            return response.headers.get("x-llm-cache-store") == "stored"

        assert wait_for(works, timeout=60), proxy.text()[-3000:]
        assert ask(proxy, "before")[0].headers["x-llm-cache"] == "HIT"
        print(f"recording again {time.monotonic() - started:.1f} s after the server came back")
    finally:
        proxy.stop()


def test_a_server_unreachable_at_start_is_waited_for_off_the_event_loop(tmp_path, certs, fake):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake,
                     db_url=f"postgresql://nobody@127.0.0.1:{dead}/cache")
    try:
        for n in range(5):  # while the store is being opened and after it failed: never a wait
            response, took = ask(proxy, f"unreachable {n}")
            assert response.status_code == 200 and took < 1.0 and "x-llm-cache" not in response.headers
            assert fetch(proxy) < 1.0
        assert wait_for(lambda: "opening the cache database postgresql://nobody@" in proxy.text())
    finally:
        proxy.stop()
