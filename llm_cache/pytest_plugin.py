"""A pytest plugin: the LLM calls of a test session go through llm-cache over a cassette, like
pytest-recording's `--record-mode`, for any client in the session's process or its subprocesses
(an agent CLI, an SDK), configured only by the proxy variables.

    pytest -p llm_cache.pytest_plugin --llm-cache=replay      (or in conftest.py:
                                                              pytest_plugins = ["llm_cache.pytest_plugin"])

`--llm-cache` MODE: `replay` (never go upstream: a call not in the cassette fails with the cache's
explanation), `record` (answer what the cassette has, record the rest), `refresh` (record
everything anew) or `off` (no proxy). `--llm-cache-cassette` PATH (default
`tests/cassettes/llm-cache.jsonl`). The session starts a mitmdump on a free port, on a SQLite file
the cassette is imported into, and exports the file back into the cassette when the session ends
(in record and refresh modes): sorted JSON Lines a review can read. The fixture `llm_cache_proxy`
gives the proxy's URL and CA file; the session's environment carries HTTPS_PROXY, HTTP_PROXY and
the CA variables of Python's and Node's clients, and no NO_PROXY."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from llm_cache import clients

ROOT = Path(__file__).resolve().parents[1]
MODES = ("replay", "record", "refresh", "off")
_LISTENING = re.compile(r"proxy listening at [^\s]*:(\d+)")
_CLEARED = (*clients.CLEARED, "ALL_PROXY", "all_proxy", "SSL_CERT_DIR")


class SessionProxy(NamedTuple):
    url: str  # http://127.0.0.1:PORT
    ca: Path  # mitmproxy's CA certificate (PEM), which clients must trust
    mode: str
    cassette: Path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm-cache", "LLM calls through llm-cache over a cassette")
    group.addoption("--llm-cache", dest="llm_cache_mode", choices=MODES, default="replay",
                    help="replay (default): only the cassette answers; record: record what it lacks; "
                         "refresh: record everything anew; off: no proxy")
    group.addoption("--llm-cache-cassette", dest="llm_cache_cassette", default="tests/cassettes/llm-cache.jsonl",
                    help="the cassette file (sorted JSON Lines), relative to the rootdir")


@pytest.fixture(scope="session", autouse=True)
def llm_cache_proxy(request: pytest.FixtureRequest) -> Iterator[SessionProxy | None]:
    mode = request.config.getoption("llm_cache_mode")
    cassette = Path(request.config.rootpath) / request.config.getoption("llm_cache_cassette")
    if mode == "off":
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="llm-cache-session-"))
    db = f"sqlite:///{folder / 'cache.sqlite3'}"
    try:
        if mode != "refresh":
            _import(cassette, db)
        proxy = _Mitmdump(folder, db, mode)
        variables = clients.environment(proxy.url, str(proxy.ca))
        saved = {name: os.environ.get(name) for name in (*_CLEARED, *variables)}
        try:
            for name in _CLEARED:
                os.environ.pop(name, None)
            os.environ.update(variables)
            yield SessionProxy(proxy.url, proxy.ca, mode, cassette)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            proxy.stop()  # its writer commits everything before it exits
        if mode in ("record", "refresh"):
            _export(db, cassette)
    finally:
        shutil.rmtree(folder, ignore_errors=True)



def _import(cassette: Path, db: str) -> int:
    import cache_models
    from llm_cache import cassettes, inventory

    if not cassette.exists():
        return 0
    cache_models.open_database(db)
    with open(cassette, "rb") as lines:
        count = inventory.upsert_entries(cassettes.read_cassette(lines, str(cassette)))
    cache_models.database.close()
    return count


def _export(db: str, cassette: Path) -> None:
    import cache_models
    from llm_cache import cassettes, inventory

    cache_models.open_database(db)
    cassette.parent.mkdir(parents=True, exist_ok=True)
    partial = cassette.with_name(cassette.name + ".partial")  # whole or not at all
    with open(partial, "wb") as out:
        cassettes.write_cassette(inventory.full_entries(), out)
    partial.replace(cassette)
    cache_models.database.close()


class _Mitmdump:
    """mitmdump with the addon, on a free loopback port; its output kept for the error message."""

    def __init__(self, folder: Path, db: str, mode: str) -> None:
        confdir = folder / "confdir"
        confdir.mkdir()
        self.ca = confdir / "mitmproxy-ca-cert.pem"
        mitmdump = Path(sys.executable).with_name("mitmdump")
        env = {name: value for name, value in os.environ.items() if name.lower() not in ("https_proxy", "http_proxy")}
        self.proc = subprocess.Popen(
            [str(mitmdump), "--set", "flow_detail=0", "--set", f"confdir={confdir}",
             "--listen-host", "127.0.0.1", "--listen-port", "0", "--set", "connection_strategy=lazy",
             "-s", str(ROOT / "addon.py"), "--set", f"llm_cache_db={db}", "--set", f"llm_cache_mode={mode}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.output: list[str] = []
        port = self._port(timeout=30)
        self.url = f"http://127.0.0.1:{port}"

    def _port(self, timeout: float) -> int:
        found: list[int] = []
        ready = threading.Event()

        def read() -> None:  # keep reading, or mitmdump blocks on a full pipe
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                if not found and (match := _LISTENING.search(line)):
                    found.append(int(match.group(1)))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1) and time.monotonic() < deadline:
            pass
        if not found or not self.ca.exists():
            self.stop()
            raise RuntimeError("llm-cache's mitmdump did not start:\n" + "\n".join(self.output[-20:]))
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
