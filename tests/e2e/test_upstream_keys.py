"""Upstream key injection through a real mitmdump: the agent holds a dummy key, the provider gets
the real one from the proxy's environment, and the real key is in no log line, no database row."""

import openai

from tests.e2e.control_helpers import chat, options, point_agent_at
from tests.support.procs import Mitmdump

REAL = "sk-proj-REALUPSTREAMKEY0123456789abcdef"


def test_an_agent_with_a_dummy_key_reaches_the_provider_with_the_real_one(tmp_path, certs, fake, monkeypatch,
                                                                         prompt):
    proxy = Mitmdump(tmp_path, certs=certs, fake=fake, env={"LLM_CACHE_E2E_REAL_KEY": REAL},
                     extra=[*options(upstream_keys="api.openai.com=LLM_CACHE_E2E_REAL_KEY"),
                            "--set", "flow_detail=3"])  # mitmdump prints every header and body
    try:
        point_agent_at(proxy, monkeypatch)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-dummy-agent-key")
        headers, _ = chat(prompt)
        assert headers["x-llm-cache"] == "MISS"
        assert fake.last()["headers"]["authorization"] == f"Bearer {REAL}"
        before = fake.calls()
        assert chat(prompt)[0]["x-llm-cache"] == "HIT" and fake.calls() == before  # a hit goes nowhere
        # Another host the rule does not name keeps the client's key.
        other = openai.OpenAI(base_url="https://api.groq.com/openai/v1")
        chat(prompt + " elsewhere", client=other)
        assert fake.last()["headers"]["authorization"] == "Bearer sk-dummy-agent-key"
    finally:
        proxy.stop()
    assert REAL not in proxy.text() and "sk-dummy-agent-key" in proxy.text()  # the flows show the client's key
    assert REAL.encode() not in proxy.db_path.read_bytes()
