"""Single flight, through a real mitmdump: identical fresh requests that arrive while the first is in
flight share its upstream call (JSON and streams); if it fails, each goes upstream itself."""

import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.procs import Mitmdump

URL = "https://api.openai.com/v1/chat/completions"


@pytest.fixture
def proxy(tmp_path, certs, fake):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake)
    yield proxy
    proxy.stop()


def together(proxy: Mitmdump, body: dict, count: int) -> list[httpx.Response]:
    """`count` identical requests at once, each on a connection of its own (bodies read whole)."""
    def one(_: int) -> httpx.Response:
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                          trust_env=False) as c:
            response = c.post(URL, json=body)
            response.read()
            return response

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_identical_requests_in_flight_share_one_upstream_call(proxy, fake, prompt, stream):
    body = {"model": "fake-slow", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    before = fake.llm_calls()
    answers = together(proxy, body, 40)
    assert fake.llm_calls() - before == 1, "more than one of them went upstream"
    assert [r.status_code for r in answers] == [200] * 40
    assert sorted(r.headers["x-llm-cache"] for r in answers) == ["HIT"] * 39 + ["MISS"]
    assert len({r.content for r in answers}) == 1, "they did not all get the same answer"


def test_when_the_first_fails_each_goes_upstream_itself(proxy, fake, prompt):
    body = {"model": "fake-500", "messages": [{"role": "user", "content": prompt}]}
    before = fake.llm_calls()
    answers = together(proxy, body, 10)
    assert [r.status_code for r in answers] == [500] * 10
    assert fake.llm_calls() - before == 10
