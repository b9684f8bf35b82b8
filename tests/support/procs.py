"""Real processes for the end-to-end tests and the benchmark: the fake upstream and mitmdump.

Every server binds port 0 on 127.0.0.1, reports the port it got, and is stopped by its PID.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import trustme

from llm_cache.endpoints import route_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SUPPORT = Path(__file__).resolve().parent


class Certs:
    """A throwaway CA (trustme) and a server certificate for the hosts the fake upstream plays."""

    HOSTS = ("localhost", "127.0.0.1", "api.openai.com", "api.anthropic.com", "openrouter.ai", "api.groq.com",
             "llm.example.test", "generativelanguage.googleapis.com", "us-central1-aiplatform.googleapis.com",
             "cloudcode-pa.googleapis.com", "example-resource.openai.azure.com", "chatgpt.com",
             "bedrock-runtime.us-east-1.amazonaws.com")

    def __init__(self, folder: Path) -> None:
        ca = trustme.CA()
        self.ca = folder / "upstream-ca.pem"
        self.server = folder / "upstream-server.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        ca.issue_cert(*self.HOSTS).private_key_and_cert_chain_pem.write_to_path(str(self.server))


class Fake:
    """tests/support/fake_upstream.py in a subprocess."""

    def __init__(self, certs: Certs) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SUPPORT / "fake_upstream.py"), "--cert", str(certs.server)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        ports = json.loads(self.proc.stdout.readline())
        self.http_port: int = ports["http"]
        self.https_port: int = ports["https"]
        self._client = httpx.Client(trust_env=False, timeout=10)

    def calls(self) -> int:
        return self._client.get(f"http://127.0.0.1:{self.http_port}/__calls").json()["total"]

    def llm_calls(self) -> int:
        """The LLM calls that reached the fake: POSTs to the paths llm-cache recognises."""
        posts = self._client.get(f"http://127.0.0.1:{self.http_port}/__calls").json()["posts"]
        return sum(n for path, n in posts.items() if route_for("POST", path, "application/json") is not None)

    def last(self) -> dict:
        """The last POST the fake received: {"path", "headers", "body"}."""
        return self._client.get(f"http://127.0.0.1:{self.http_port}/__last").json()

    def fail_with(self, status: int) -> None:
        """Answer every call with this HTTP status from now on; 0 goes back to normal."""
        self._client.post(f"http://127.0.0.1:{self.http_port}/__fail", json={"status": status})

    def stop(self) -> None:
        self._client.close()
        stop_pid(self.proc)


class Mitmdump:
    """A real mitmdump with our addon (and the test router), on its own confdir and database."""

    LISTENING = re.compile(r"proxy listening at 127\.0\.0\.1:(\d+)")

    def __init__(
        self,
        folder: Path,
        *,
        certs: Certs | None = None,
        fake: Fake | None = None,
        upstream_https: int | None = None,
        db_url: str | None = None,
        scripts: Sequence[Path] = (ROOT / "addon.py",),
        extra: Sequence[str] = (),
        tool: str = "mitmdump",
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.env = env or {}  # beside clean_env(): what the proxy's own environment holds
        self.confdir = folder / "confdir"
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.db_path = folder / "cache.sqlite3"
        self.ca = self.confdir / "mitmproxy-ca-cert.pem"
        args = [str(BIN / tool), "--set", f"confdir={self.confdir}", "--listen-host", "127.0.0.1",
                "--listen-port", "0", "--set", "connection_strategy=lazy",
                "--set", f"llm_cache_db={db_url or f'sqlite:///{self.db_path}'}"]
        for script in scripts:
            args += ["-s", str(script)]
        if fake is not None or upstream_https is not None:
            https = upstream_https if upstream_https is not None else fake.https_port  # type: ignore[union-attr]
            args += ["-s", str(SUPPORT / "route_addon.py"), "--set", f"fake_upstream_https=127.0.0.1:{https}"]
            if fake is not None:
                args += ["--set", f"fake_upstream_http=127.0.0.1:{fake.http_port}"]
        if certs is not None:
            args += ["--set", f"ssl_verify_upstream_trusted_ca={certs.ca}"]
        self.args = args + list(extra)
        self.log: list[str] = []
        self.port = 0
        self.start()

    def start(self) -> None:
        self.log.clear()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=clean_env(**self.env))
        ready = threading.Event()

        def drain() -> None:  # keep reading, or mitmdump blocks on a full pipe
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                if match := self.LISTENING.search(line):
                    self.port = int(match.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or not self.port:
            self.stop()
            raise RuntimeError("mitmdump did not start:\n" + "\n".join(self.log))

    def stop(self) -> None:
        stop_pid(self.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """What a user exports for an agent: the proxy, and trust in mitmproxy's CA for each client."""
        ca = str(self.ca)
        return {
            "HTTPS_PROXY": self.url, "HTTP_PROXY": self.url, "https_proxy": self.url, "http_proxy": self.url,
            "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca, "CURL_CA_BUNDLE": ca, "NODE_EXTRA_CA_CERTS": ca,
        }

    def text(self) -> str:
        return "\n".join(self.log)


def failed_start(confdir: Path, *options: str) -> str:
    """Start mitmdump with our addon and these arguments, expecting it to refuse; returns its output."""
    result = subprocess.run(
        [str(BIN / "mitmdump"), "--set", f"confdir={confdir}", "-s", str(ROOT / "addon.py"),
         "--listen-host", "127.0.0.1", "--listen-port", "0", *options],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )
    assert result.returncode != 0, "mitmdump started although it should have refused"
    return result.stdout + result.stderr


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without proxy settings, CA overrides or base URLs a test did not choose."""
    drop = {"NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
            "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
            "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "OLLAMA_HOST"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


def stop_pid(proc: subprocess.Popen) -> None:
    """Stop one process we started, by its PID: SIGTERM (mitmdump then runs its `done` hooks), then KILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def explain(db_path: Path, key: str):
    """What `llmcache.explain KEY` answers, read from a stopped proxy's database."""
    import cache_models

    store = cache_models.CacheStore(f"sqlite:///{db_path}")
    try:
        return store.explain(key)
    finally:
        store.close()
