"""Single flight, through a real mitmdump: identical fresh requests that arrive while the first is in
flight share its upstream call (JSON and streams); if it fails, each goes upstream itself."""

import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import httpx
import pytest

from tests.support.procs import Mitmdump

URL = "https://api.openai.com/v1/chat/completions"


@pytest.fixture
def proxy(tmp_path, certs, fake):
    proxy = Mitmdump(tmp_path / "proxy", certs=certs, fake=fake)
    yield proxy
    proxy.stop()


class Answer(NamedTuple):
    response: httpx.Response  # its status and headers
    body: bytes
    first: float  # seconds from the start to its first body bytes
    last: float  # to its last


def together(proxy: Mitmdump, body: dict, count: int) -> list[Answer]:
    """`count` identical requests at once, each on a connection of its own."""
    def one(_: int) -> Answer:
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=proxy.ca), timeout=60,
                          trust_env=False) as c:
            started, first, chunks = time.monotonic(), None, []
            with c.stream("POST", URL, json=body) as response:
                for chunk in response.iter_raw():
                    first = first or time.monotonic() - started
                    chunks.append(chunk)
            return Answer(response, b"".join(chunks), first or 0.0, time.monotonic() - started)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_identical_requests_in_flight_share_one_upstream_call(proxy, fake, prompt, stream):
    body = {"model": "fake-slow", "messages": [{"role": "user", "content": prompt}], "stream": stream}
    before = fake.llm_calls()
    answers = together(proxy, body, 40)
    assert fake.llm_calls() - before == 1, "more than one of them went upstream"
    assert [a.response.status_code for a in answers] == [200] * 40
    assert sorted(a.response.headers["x-llm-cache"] for a in answers) == ["HIT"] * 39 + ["MISS"]
    assert len({a.body for a in answers}) == 1, "they did not all get the same answer"
    if stream:  # each got the first one's events as they came: its first well before its last
        assert all(a.last - a.first > 1.0 for a in answers), [(a.first, a.last) for a in answers]


def test_when_the_first_fails_each_goes_upstream_itself(proxy, fake, prompt):
    body = {"model": "fake-500", "messages": [{"role": "user", "content": prompt}]}
    before = fake.llm_calls()
    answers = together(proxy, body, 10)
    assert [a.response.status_code for a in answers] == [500] * 10
    assert fake.llm_calls() - before == 10
