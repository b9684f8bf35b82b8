"""Shared by the control tests: proxies started with options, agents pointed at them by environment."""

import openai

from tests.support.procs import Mitmdump


def options(**values) -> list[str]:
    """--set arguments for llm_cache_* options; a list becomes one --set per item."""
    args = []
    for name, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            args += ["--set", f"llm_cache_{name}={str(item).lower() if isinstance(item, bool) else item}"]
    return args


def point_agent_at(proxy: Mitmdump, monkeypatch, **extra: str) -> None:
    for name in ("NO_PROXY", "no_proxy", "SSL_CERT_DIR", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    env = {**proxy.client_env(), "OPENAI_API_KEY": "sk-proj-E2ESECRETOPENAI",
           "ANTHROPIC_API_KEY": "sk-ant-E2ESECRETANTHROPIC", **extra}
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def chat(prompt, *, client=None, **kwargs):
    """One chat call with the openai SDK; returns (headers, completion)."""
    client = client or openai.OpenAI()
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", [{"role": "user", "content": prompt}])
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    return raw.headers, raw.parse()


def text(completion) -> str:
    return completion.choices[0].message.content
