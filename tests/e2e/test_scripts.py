"""The README's own commands: scripts/run (with ./config.yaml), and the marks a mitmweb user sees."""

import re
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.procs import ROOT, Mitmdump, clean_env, failed_start, stop_pid

REPO_FILES = ("addon.py", "cache_models.py", "config.yaml", "llm_cache", "scripts", "requirements.txt",
              "requirements-dev.txt", "constraints.txt", ".python-version")


def chat_body(prompt):
    return orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})


def test_scripts_run_starts_the_proxy_with_the_repos_config(tmp_path, fake, certs):
    # A copy of the repo, so the test's CA and database stay out of the working tree; .venv is shared.
    for name in REPO_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    proc = subprocess.Popen(
        [str(tmp_path / "scripts" / "run"), "--listen-port", "0",
         "--set", f"ssl_verify_upstream_trusted_ca={certs.ca}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
    )
    log: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            if "Point an agent at it" in "".join(log[-2:]) and line.lstrip().startswith("export"):
                break
        text = "".join(log)
        port = int(text.split("proxy listening at 127.0.0.1:")[1].split(".")[0])
        ca = tmp_path / "mitmproxy-ca-cert.pem"
        assert f"SSL_CERT_FILE={ca}" in text and f"HTTPS_PROXY=http://127.0.0.1:{port}" in text
        assert f"sqlite:///{tmp_path}/llm-cache.sqlite3" in text  # config.yaml's relative path, resolved

        with httpx.Client(proxy=f"http://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=ca),
                          trust_env=False) as client:
            url = f"https://127.0.0.1:{fake.https_port}/v1/chat/completions"
            heads = [client.post(url, content=chat_body("scripts/run"), headers={"content-type": "application/json"})
                     .headers["x-llm-cache"] for _ in range(2)]
        assert heads == ["MISS", "HIT"]
        assert (tmp_path / "llm-cache.sqlite3").exists()
    finally:
        stop_pid(proc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mitmweb_shows_hits_and_misses(tmp_path: Path, fake, certs):
    web_port = free_port()
    web = Mitmdump(tmp_path, certs=certs, fake=fake, tool="mitmweb",
                   extra=["--set", f"web_port={web_port}", "--set", "web_open_browser=false"])
    try:
        with httpx.Client(proxy=web.url, verify=ssl.create_default_context(cafile=web.ca), trust_env=False) as client:
            for _ in range(2):
                client.post("https://api.openai.com/v1/chat/completions", content=chat_body("mitmweb"),
                            headers={"content-type": "application/json", "x-llm-cache-tags": "run-1"})
            client.get("https://api.openai.com/v1/models")
            client.post("https://api.openai.com/v1/chat/completions", headers={"content-type": "application/json"},
                        content=orjson.dumps({"model": "fake-500", "messages": [{"role": "user", "content": "x"}]}))
        token = web.text().split("?token=")[1].split()[0]
        deadline = time.monotonic() + 10
        while True:
            flows = httpx.get(f"http://127.0.0.1:{web_port}/flows?token={token}", trust_env=False).json()
            if len(flows) == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        seen = [(f["request"]["path"], f["marked"], f["comment"].split(" · ")[0], f["is_replay"]) for f in flows]
        assert seen == [
            ("/v1/chat/completions", "💾", "MISS stored", None),
            ("/v1/chat/completions", "⚡", "HIT", "response"),
            ("/v1/models", "", "", None),
            ("/v1/chat/completions", "🔴", "MISS skipped: upstream status 500", None),
        ]

        # The commands, as mitmweb's command bar (or its API) runs them.
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", trust_env=False) as ui:
            ui.get("/", params={"token": token})  # logs in: sets the auth cookie
            # The UI gets its XSRF cookie over the websocket; tornado takes any matching cookie/header pair.
            ui.cookies.set("_mitmproxy_xsrf", "11223344")
            xsrf = {"X-XSRFToken": "11223344"}
            table = ui.post("/commands/llmcache.stats", json={"arguments": []}, headers=xsrf).json()["value"]
            assert table[0] == ["family", "entries", "hits", "bytes"] and table[1][:3] == ["openai.chat", "1", "1"]
            def run(command, *arguments):
                return ui.post(f"/commands/{command}", json={"arguments": list(arguments)}, headers=xsrf).json()

            assert run("llmcache.invalidate", "run-2")["value"] == 0
            assert run("llmcache.invalidate", "run-1")["value"] == 1
            assert run("llmcache.clear")["value"] == 0
            assert "no entry has a key starting with 'ffff'" in run("llmcache.reject", "ffff")["error"]
            assert run("llmcache.bump", "doc:42", "v2")["value"].startswith("doc:42 is at v2")
            # mitmweb's option editor offers the enum options as lists
            listed = ui.get("/options", headers=xsrf).json()
            assert listed["llm_cache_mode"]["choices"] == ["record", "replay", "refresh", "readonly", "writeonly",
                                                           "off"]
            assert listed["llm_cache_scope"]["choices"] == ["global", "credential"]
    finally:
        web.stop()


def test_a_bad_database_option_stops_mitmdump_with_a_clear_message(tmp_path):
    output = failed_start(tmp_path, "--set", "llm_cache_db=mysql://db/cache")
    assert "llm_cache_db must be a database URL with one of the schemes sqlite, postgres, postgresql" in output


def repo_copy(folder: Path) -> Path:
    """What a clone holds, in `folder` (scripts/run makes its CA and cache there), with our .venv."""
    for name in REPO_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def until(proc: subprocess.Popen, *wanted: str) -> str:
    """A started process's output up to the line where every wanted text has appeared."""
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if all(text in seen for text in wanted):
            return seen
    raise AssertionError(f"the process ended without saying {wanted}: {seen}")


def test_scripts_run_lets_the_command_line_win_over_config_yaml(tmp_path):
    # mitmproxy applies config.yaml after --set to the options an addon declares (mitmproxy#5069).
    repo = repo_copy(tmp_path)
    proc = subprocess.Popen(
        [str(repo / "scripts" / "run"), "--listen-port", "0", "--set", "llm_cache_db=sqlite:///elsewhere.sqlite3",
         "--set", "llm_cache_mode=replay"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
    )
    try:
        seen = until(proc, "Point an agent at it")
    finally:
        stop_pid(proc)
    assert f"caching LLM calls in sqlite:///{repo}/elsewhere.sqlite3 (mode replay)" in seen
    assert "--set llm_cache_db on the command line wins over config.yaml" in seen
    assert not (repo / "llm-cache.sqlite3").exists()  # config.yaml's database was never opened


def test_scripts_run_web_starts_mitmweb(tmp_path):
    repo_copy(tmp_path)
    web_port = free_port()
    proc = subprocess.Popen(
        [str(tmp_path / "scripts" / "run"), "--web", "--listen-port", "0", "--set", f"web_port={web_port}",
         "--set", "web_open_browser=false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
    )
    try:
        seen = until(proc, "Point an agent at it", f"Web server listening at http://127.0.0.1:{web_port}/")
        assert "Loading script" in seen and "addon.py" in seen
        token = seen.split("?token=")[1].split()[0]
        assert httpx.get(f"http://127.0.0.1:{web_port}/flows?token={token}", trust_env=False).json() == []
    finally:
        stop_pid(proc)


@pytest.mark.parametrize(("extra", "what"), [
    ((), "JSON"),
    (("--stream-events", "50"), r"streamed \(50-event, \d+ KB\)"),
])
def test_the_in_process_benchmark_records_every_miss_it_measures(extra, what):
    # scripts/bench --hooks: the steadier A/B instrument the README's speed notes cite. It refuses to
    # report unless every measured miss was recorded.
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "_bench.py"),
                             "--hooks", "60", "--body-kb", "4", *extra],
                            capture_output=True, text=True, timeout=120, env=clean_env(), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"60 fresh 4 KB {what} misses through the addon's hooks .*: hooks \d+ us median .*"
                     r"process CPU \d+ us per miss", result.stdout), result.stdout
