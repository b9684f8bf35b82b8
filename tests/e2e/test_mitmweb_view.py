"""The "LLM" content view in a real mitmweb: what its UI fetches to show a flow's request and answer."""

import contextlib
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

from tests.e2e.test_scripts import free_port
from tests.support.procs import Mitmdump, wait_for

SYSTEM = "You answer in one line."


def chat(prompt: str, *, stream: bool) -> bytes:
    return orjson.dumps({"model": "gpt-4o-mini", "stream": stream,
                         "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]})


@contextlib.contextmanager
def mitmweb(tmp_path: Path, fake, certs, *extra: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """A real mitmweb with the addon: (a client of its UI, logged in; a client proxied through it)."""
    web_port = free_port()
    web = Mitmdump(tmp_path, certs=certs, fake=fake, tool="mitmweb",
                   extra=["--set", f"web_port={web_port}", "--set", "web_open_browser=false", *extra])
    try:
        assert wait_for(lambda: "?token=" in web.text())
        token = web.text().split("?token=")[1].split()[0]
        proxied = ssl.create_default_context(cafile=web.ca)
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", trust_env=False) as ui, \
                httpx.Client(proxy=web.url, verify=proxied, trust_env=False) as client:
            ui.get("/", params={"token": token})  # logs in: sets the auth cookie
            yield ui, client
    finally:
        web.stop()


def test_mitmweb_shows_llm_calls_in_the_llm_view(tmp_path: Path, fake, certs):
    with mitmweb(tmp_path, fake, certs) as (ui, client):
        def settled(count: int) -> list[dict]:
            """mitmweb's flows once there are `count` and a stream's store outcome has reached its
            flow (when the writer has committed it)."""
            deadline = time.monotonic() + 10
            while True:
                flows = ui.get("/flows").json()
                calls = [f["comment"] for f in flows if f["request"]["method"] == "POST"]
                if len(flows) == count and all(c and "queued" not in c for c in calls) \
                        or time.monotonic() > deadline:
                    return flows
                time.sleep(0.1)

        for n, stream in enumerate((False, False, True, True), start=1):
            body = chat(f"web view {'stream' if stream else 'json'}", stream=stream)
            with client.stream("POST", "https://api.openai.com/v1/chat/completions", content=body,
                               headers={"content-type": "application/json"}) as answer:
                answer.read()
            # The repeat must find the entry committed: an identical request while the first is in
            # flight is answered with its live stream instead, which mitmproxy keeps no body of.
            settled(n)
        client.get("https://api.openai.com/v1/models")
        flows = settled(5)
        assert [f["comment"].split(" · ")[0] for f in flows] == ["MISS stored", "HIT", "MISS stored", "HIT", ""]

        def view(flow: dict, message: str, name: str = "llm") -> dict:
            # What mitmweb's UI fetches for a message in the view the user picked ("Auto" first).
            return ui.get(f"/flows/{flow['id']}/{message}/content/{name}.json", params={"lines": 500}).json()

        for flow, stream in zip(flows[:4], (False, False, True, True), strict=True):
            prompt = f"web view {'stream' if stream else 'json'}"
            request = view(flow, "request")
            assert request["view_name"] == "LLM"
            assert request["text"].splitlines() == [
                "openai.chat · model gpt-4o-mini" + (" · stream" if stream else ""), "",
                "[system]", f"  {SYSTEM}", "[user]", f"  {prompt}"]

            response = view(flow, "response")
            lines = response["text"].splitlines()
            status = "MISS · stored" if flow["comment"].startswith("MISS") else "HIT"
            assert lines[0] == f"llm-cache: {status}"
            assert lines[1].startswith("key: " + flow["comment"].splitlines()[0].split(" · ")[-1])
            how = r"assembled from an SSE stream of \d+ events" if stream else "JSON"
            assert re.fullmatch(rf"openai\.chat · model gpt-4o-mini · {how}", lines[3]), lines
            assert lines[4] == "finish: stop"
            assert lines[-2] == "[assistant]" and re.fullmatch(rf"  call #\d+: {prompt}", lines[-1]), lines

            for message in ("request", "response"):  # the view the UI opens a flow with
                assert view(flow, message, "Auto")["view_name"] == "LLM"
        assert view(flows[2], "response", "Auto")["text"] == view(flows[2], "response")["text"]
        assert view(flows[4], "response", "Auto")["view_name"] != "LLM"  # GET /v1/models is not an LLM call


def test_mitmweb_marks_a_semantic_hit_with_its_similarity(tmp_path: Path, fake, certs):
    with mitmweb(tmp_path, fake, certs, "--set", "llm_cache_semantic=true") as (ui, client):
        for prompt in ("How do I reverse a list in Python?", "how do i reverse a list in python"):
            client.post("https://api.openai.com/v1/chat/completions", content=chat(prompt, stream=False),
                        headers={"content-type": "application/json"}).raise_for_status()
        flows = ui.get("/flows").json()
        outcome, similarity, age, _ = flows[1]["comment"].split(" · ")
        assert (outcome, age) == ("HIT-SEMANTIC", "age 0s") and float(similarity.split()[1]) >= 0.75
        assert flows[1]["marked"] == "⚡" and flows[1]["is_replay"] == "response"
