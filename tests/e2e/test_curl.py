"""curl through a real mitmdump: HTTP/2 and HTTP/1.1 over HTTPS, plain HTTP, and traffic we leave alone."""

import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(*args, data=None):
    """Run curl with the test's environment (proxy and CA from variables); returns (status, headers, body)."""
    cmd = ["curl", "-sS", "--max-time", "20", "-D", "-", *args]
    if data is not None:
        cmd += ["-H", "content-type: application/json", "-H", "authorization: Bearer sk-CURLSECRET", "--data-binary",
                data]
    out = subprocess.run(cmd, capture_output=True, env=dict(os.environ), check=True).stdout.decode()
    blocks = out.replace("\r\n", "\n").split("\n\n")
    while blocks[0].startswith("HTTP/1.1 200 Connection established"):
        blocks.pop(0)
    head, body = blocks[0], "\n\n".join(blocks[1:])
    status_line, *lines = head.split("\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line, headers, body


def body(prompt, **extra):
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}], **extra})


@pytest.mark.parametrize("version, expected", [("--http2", "HTTP/2"), ("--http1.1", "HTTP/1.1")])
def test_https_miss_then_hit(client_env, fake, prompt, version, expected):
    before = fake.calls()
    s1, h1, b1 = curl(version, "https://api.openai.com/v1/chat/completions", data=body(prompt))
    s2, h2, b2 = curl(version, "https://api.openai.com/v1/chat/completions", data=body(prompt))
    assert s1.startswith(expected) and s2.startswith(expected)
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("MISS", "HIT") and json.loads(b2) == json.loads(b1)
    assert fake.calls() - before == 1


def test_plain_http_through_the_lowercase_proxy_variable(client_env, fake, prompt):
    url = f"http://127.0.0.1:{fake.http_port}/v1/chat/completions"
    _, h1, b1 = curl(url, data=body(prompt))
    _, h2, b2 = curl(url, data=body(prompt))
    assert (h1["x-llm-cache"], h2["x-llm-cache"]) == ("MISS", "HIT") and b2 == b1


def test_stream_hit_is_a_valid_event_stream(client_env, prompt):
    data = body(prompt, stream=True)
    _, _, recorded = curl("https://api.openai.com/v1/chat/completions", data=data)
    _, headers, replay = curl("https://api.openai.com/v1/chat/completions", data=data)
    assert headers["x-llm-cache"] == "HIT" and headers["content-type"].startswith("text/event-stream")
    assert replay == recorded and replay.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize(
    "args",
    [
        lambda fake: ["https://api.openai.com/v1/models"],
        lambda fake: ["-X", "POST", "https://api.openai.com/v1/chat/completions", "-H", "content-type: text/plain",
                      "--data-binary", "plain words"],
        lambda fake: ["-X", "POST", "https://api.openai.com/v1/files", "-H", "content-type: application/json",
                      "--data-binary", '{"model": "x", "messages": []}'],
        lambda fake: [f"http://127.0.0.1:{fake.http_port}/index.html"],
    ],
    ids=["get", "non-json-post", "other-path", "plain-http-page"],
)
def test_other_traffic_is_untouched(client_env, fake, args):
    before = fake.calls()
    answers = [curl(*args(fake)) for _ in range(2)]
    assert fake.calls() - before == 2
    assert all("x-llm-cache" not in headers for _, headers, _ in answers)
    assert answers[0][2] != answers[1][2]  # each answer came fresh from upstream (its call number differs)
