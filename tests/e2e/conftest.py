"""End-to-end fixtures: a real mitmdump with the addon, real clients, a local fake provider."""

import pytest

from tests.support.procs import Mitmdump


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, certs, fake):
    """One proxy per test module; tests keep apart by sending prompts of their own."""
    proxy = Mitmdump(tmp_path_factory.mktemp("proxy"), certs=certs, fake=fake)
    yield proxy
    proxy.stop()


@pytest.fixture
def client_env(proxy, monkeypatch):
    """The environment of an agent pointed at the proxy: only variables, no code changes."""
    for name in ("NO_PROXY", "no_proxy", "SSL_CERT_DIR", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in proxy.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-E2ESECRETOPENAI")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-E2ESECRETANTHROPIC")
    return proxy


@pytest.fixture
def prompt(request):
    """A prompt no other test sends, so tests sharing a proxy never hit each other's entries."""
    return f"say hi for {request.node.nodeid}"
