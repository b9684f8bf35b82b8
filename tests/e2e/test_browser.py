"""What a person sees, in a real headless Chromium (Debian's `chromium`, driven by playwright): mitmweb's
flow list and "LLM" view, and the dashboard opened through the proxy. Each test saves screenshots in its
tmp_path and, when LLM_CACHE_SCREENSHOTS=DIR is set, in DIR too (docs/screenshots comes from that)."""

import os
import re
import shutil
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.test_scripts import free_port
from tests.support.procs import Mitmdump, clean_env, wait_for

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # skipped below, or failed in CI
    sync_playwright = None  # type: ignore[assignment]

pytestmark = pytest.mark.timeout(60)

# The default columns and the comment, where the cache writes its outcome first.
COLUMNS = ("tls", "icon", "path", "method", "status", "comment")
CALLS = (("browser json", False), ("browser json", False), ("browser stream", True), ("browser stream", True))


@pytest.fixture(scope="module")
def chromium_path() -> str:
    """The system Chromium, when it and playwright are here; CI must have both (.ci/run installs chromium)."""
    path = shutil.which("chromium")
    missing = [name for name, absent in (("chromium", path is None), ("playwright", sync_playwright is None))
               if absent]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {' and '.join(missing)}: .ci/run installs chromium, "
                        "requirements-dev.txt pins playwright")
        pytest.skip(f"{' and '.join(missing)} not installed "
                    "(apt-get install chromium; scripts/test installs playwright)")
    assert path is not None
    return path


@pytest.fixture
def launch(chromium_path: str) -> Iterator[Callable[..., "Browser"]]:
    """Starts headless Chromium with extra arguments; playwright's own browser builds are not used."""
    with sync_playwright() as playwright:
        def start(*args: str) -> "Browser":
            # No sandbox: CI runs as root, where Chromium refuses to start with one. clean_env keeps the
            # user's proxy variables from reaching the browser.
            env: dict[str, str | float | bool] = {**clean_env()}
            return playwright.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", *args],
                                              env=env, timeout=30_000)
        yield start


def new_page(browser: "Browser") -> "Page":
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(15_000)
    return page


def screenshot(page: "Page", tmp_path: Path, name: str) -> None:
    image = page.screenshot()
    folders = [tmp_path] + ([Path(shots)] if (shots := os.environ.get("LLM_CACHE_SCREENSHOTS")) else [])
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(image)


@dataclass
class Web:
    proxy: Mitmdump
    ui: str  # mitmweb's URL with its token, as it prints it
    keys: list[str]  # x-llm-cache-key of each call in CALLS


def settled(ui: httpx.Client) -> int:
    """How many of mitmweb's flows have their outcome: a stream's comes once the writer has committed it."""
    return sum(1 for flow in ui.get("/flows").json() if flow["comment"] and "queued" not in flow["comment"])


@pytest.fixture(scope="module")
def web(chromium_path, tmp_path_factory, fake, certs) -> Iterator[Web]:
    """A real mitmweb with the comment column on, and each call in CALLS sent through it: a miss, then a hit."""
    web_port = free_port()
    columns = [arg for column in COLUMNS for arg in ("--set", f"web_columns={column}")]
    proxy = Mitmdump(tmp_path_factory.mktemp("mitmweb"), certs=certs, fake=fake, tool="mitmweb",
                     extra=["--set", f"web_port={web_port}", "--set", "web_open_browser=false", *columns])
    try:
        assert wait_for(lambda: "?token=" in proxy.text())
        token = proxy.text().split("?token=")[1].split()[0]
        trusted = ssl.create_default_context(cafile=proxy.ca)
        keys = []
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", trust_env=False) as ui, \
                httpx.Client(proxy=proxy.url, verify=trusted, trust_env=False, timeout=20) as client:
            ui.get("/", params={"token": token})  # logs in: sets the auth cookie
            for n, (prompt, stream) in enumerate(CALLS, start=1):
                body = orjson.dumps({"model": "gpt-4o-mini", "stream": stream,
                                     "messages": [{"role": "user", "content": prompt}]})
                with client.stream("POST", "https://api.openai.com/v1/chat/completions", content=body,
                                   headers={"content-type": "application/json"}) as answer:
                    answer.read()
                    keys.append(answer.headers["x-llm-cache-key"])
                # The repeat must find the entry committed (as in test_mitmweb_view.py): an identical
                # request while the first is in flight gets its live stream, of which mitmproxy keeps no body.
                assert wait_for(lambda n=n: settled(ui) == n)
        yield Web(proxy, f"http://127.0.0.1:{web_port}/?token={token}", keys)
    finally:
        proxy.stop()


def test_mitmweb_shows_marks_comments_and_the_llm_view(web: Web, launch, tmp_path: Path):
    browser = launch()
    page = new_page(browser)
    page.goto(web.ui)
    rows = page.locator(".flow-table tbody tr.has-request")
    expect(rows).to_have_count(len(CALLS))
    assert rows.locator(".col-path .marker").all_inner_texts() == ["💾", "⚡", "💾", "⚡"]
    # The outcome first, then the entry's key; the cell runs the comment's near-miss line into the first.
    json_key, stream_key = web.keys[0][:12], web.keys[2][:12]
    wanted = [f"MISS stored · {json_key}", rf"HIT · age \d+s · {json_key}",
              f"MISS stored · {stream_key} near miss: {stream_key} differs from {json_key} at "
              r'messages\[0\]\.content: "browser json" -> "browser stream"', rf"HIT · age \d+s · {stream_key}"]
    comments = rows.locator(".col-comment").all_inner_texts()
    assert all(re.fullmatch(w, c) for w, c in zip(wanted, comments, strict=True)), comments
    assert rows.locator(".col-path").all_inner_texts()[0].endswith("https://api.openai.com/v1/chat/completions")

    # The streamed miss, then its hit: the response opens in the LLM view, with the stream assembled.
    for row, status in ((2, "MISS · stored"), (3, "HIT")):
        rows.nth(row).click()
        page.locator(".flow-detail nav a", has_text="Response").click()
        view = page.locator(".flow-detail section.response .contentview")
        expect(view.locator(".controls h5")).to_have_text("LLM")
        text = view.locator("pre")
        expect(text).to_contain_text(f"llm-cache: {status}")
        expect(text).to_contain_text(f"key: {web.keys[row]}")
        expect(text).to_contain_text("openai.chat · model gpt-4o-mini · assembled from an SSE stream of")
        expect(text).to_contain_text("finish: stop")
        lines = text.inner_text().splitlines()  # the answer the fake streamed, assembled
        assert lines[-2] == "[assistant]" and re.fullmatch(r"  call #\d+: browser stream", lines[-1]), lines
    page.evaluate("document.activeElement.blur()")  # no focus ring on the tab in the picture
    screenshot(page, tmp_path, "mitmweb-llm-view.png")
    browser.close()


def test_the_dashboard_in_a_browser_through_the_proxy(web: Web, launch, tmp_path: Path):
    browser = launch(f"--proxy-server={web.proxy.url}")
    page = new_page(browser)
    # Hits are counted by the writer in its batches: reload until the page has all four calls.
    deadline = time.monotonic() + 15
    while True:
        page.goto("http://llm-cache.local/")
        stats = {name: page.locator(f'[data-stat="{name}"]').inner_text() for name in ("hits", "misses", "hit_rate")}
        if stats["hits"] == "2" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stats == {"hits": "2", "misses": "2", "hit_rate": "50.0%"}
    body = page.locator("body").inner_text()
    for key in (web.keys[0], web.keys[2]):
        assert key[:12] in body
    assert "browser json" not in body and "browser stream" not in body  # never a prompt
    screenshot(page, tmp_path, "dashboard.png")
    browser.close()
