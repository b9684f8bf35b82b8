"""The product's promise for agent/SDK frameworks: a tool loop run a second time, as a new process,
comes from the cache, every call of it, and gives the same final answer.

Each framework (pinned in requirements.txt and package.json here; scripts/test installs them into
.cache/frameworks) runs a client of ours (clients/) that offers one tool, get_weather, and loops until
the model answers. Nothing in a client names the proxy: it is configured by the environment alone
(HTTPS_PROXY, the one CA variable its HTTP stack reads, OPENAI_API_KEY). The fake provider plays the
model (fake_agent): with TOOL_SESSION in the prompt it calls get_weather for Paris, then answers with
FINAL_PREFIX and the start of the tool's result, so the answer shows the result went back.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from llm_cache.endpoints import route_for
from tests.support import fake_agent
from tests.support.agents import Run
from tests.support.procs import ROOT, SUPPORT, Mitmdump, clean_env

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients"
VENV_PYTHON = ROOT / ".cache" / "frameworks" / "venv" / "bin" / "python"
NODE_DIR = ROOT / ".cache" / "frameworks" / "node"
NODE = NODE_DIR / "node_modules" / ".bin" / "node"

PROMPT = f"{fake_agent.TOOL_SESSION}: what is the weather in {fake_agent.WEATHER_CITY}?"
FINAL = f"{fake_agent.FINAL_PREFIX} sunny, 21 C"  # the start of the tool's result
KEY = "sk-proj-E2EFRAMEWORKKEY"


CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")


class Framework(NamedTuple):
    command: Callable[[list[str], Path], list[str]]  # (flags, working directory) -> argv
    binary: Path  # what must be installed
    ca: str  # the variable that makes it trust mitmproxy's CA; given alone, so the test shows it is the one
    env: dict[str, str]  # beyond the proxy variables, the CA and the key


def _python(script: str) -> Callable[[list[str], Path], list[str]]:
    return lambda flags, work: [str(VENV_PYTHON), str(CLIENTS / script), PROMPT, *flags]


def _node(flags: list[str], work: Path) -> list[str]:
    # An ES module resolves its imports from its own folder (NODE_PATH does not apply): the client
    # runs from a copy beside a link to the installed node_modules.
    script = work / "vercel_ai_loop.mjs"
    shutil.copyfile(CLIENTS / "vercel_ai_loop.mjs", script)
    if not (work / "node_modules").exists():
        (work / "node_modules").symlink_to(NODE_DIR / "node_modules")
    return [str(NODE), str(script), PROMPT, *flags]


FRAMEWORKS = {
    # Each Python one calls through the openai SDK (httpx), which reads SSL_CERT_FILE.
    "openai-agents": Framework(_python("openai_agents_loop.py"), VENV_PYTHON, "SSL_CERT_FILE", {}),
    "langchain": Framework(_python("langchain_loop.py"), VENV_PYTHON, "SSL_CERT_FILE", {}),
    # LiteLLM fetches its model cost map from GitHub on import (here that GET fails, with warnings
    # and retries in a thread); its documented switch keeps it to the copy it ships.
    "litellm": Framework(_python("litellm_loop.py"), VENV_PYTHON, "SSL_CERT_FILE",
                         {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}),
    "pydantic-ai": Framework(_python("pydantic_ai_loop.py"), VENV_PYTHON, "SSL_CERT_FILE", {}),
    # Node's fetch takes HTTPS_PROXY only with NODE_USE_ENV_PROXY=1.
    "vercel-ai": Framework(_node, NODE, "NODE_EXTRA_CA_CERTS", {"NODE_USE_ENV_PROXY": "1"}),
}

RESPONSES, CHAT = "/v1/responses", "/v1/chat/completions"
# (framework, its flags, the API path it must call): each framework's default call, and its streaming
# one; Pydantic AI's and the AI SDK's OpenAI models default to the Responses API, and have a chat one.
CASES = [
    pytest.param("openai-agents", [], RESPONSES, id="openai-agents-responses"),
    pytest.param("openai-agents", ["--stream"], RESPONSES, id="openai-agents-responses-stream"),
    pytest.param("langchain", [], CHAT, id="langchain-chat"),
    pytest.param("langchain", ["--stream"], CHAT, id="langchain-chat-stream"),
    pytest.param("litellm", [], CHAT, id="litellm-chat"),
    pytest.param("litellm", ["--stream"], CHAT, id="litellm-chat-stream"),
    pytest.param("pydantic-ai", [], RESPONSES, id="pydantic-ai-responses"),
    pytest.param("pydantic-ai", ["--stream"], RESPONSES, id="pydantic-ai-responses-stream"),
    pytest.param("pydantic-ai", ["--chat"], CHAT, id="pydantic-ai-chat"),
    pytest.param("vercel-ai", [], RESPONSES, id="vercel-ai-responses"),
    pytest.param("vercel-ai", ["--stream"], RESPONSES, id="vercel-ai-responses-stream"),
    pytest.param("vercel-ai", ["--chat", "--stream"], CHAT, id="vercel-ai-chat-stream"),
]


def framework(name: str) -> Framework:
    chosen = FRAMEWORKS[name]
    if not chosen.binary.exists():
        message = f"{name} is not installed: scripts/test installs the pinned frameworks into .cache/frameworks"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chosen


def run(chosen: Framework, flags: list[str], proxy: Mitmdump, home: Path, timeout: float = 50) -> Run:
    """Run the client once, as a new process, configured by environment variables only, in HOME as
    its working directory."""
    home.mkdir(parents=True, exist_ok=True)
    env = clean_env()
    for name in ("OPENAI_API_BASE", "OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "OPENAI_PROJECT_ID",
                 "OPENAI_DEFAULT_MODEL", "LITELLM_LOCAL_MODEL_COST_MAP", "VIRTUAL_ENV", "PYTHONPATH",
                 "NODE_OPTIONS", *CA_VARIABLES):
        env.pop(name, None)
    exported = proxy.client_env()
    env.update({k: v for k, v in exported.items() if k not in CA_VARIABLES}, **chosen.env,
               OPENAI_API_KEY=KEY, HOME=str(home))
    env[chosen.ca] = exported[chosen.ca]
    started = time.monotonic()
    result = subprocess.run(chosen.command(flags, home), cwd=home, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def llm_requests(folder: Path) -> list[dict[str, Any]]:
    """The LLM requests the proxy received, as the client sent them (capture_addon)."""
    lines = (folder / "requests.jsonl").read_text().splitlines() if (folder / "requests.jsonl").exists() else []
    return [r for r in map(json.loads, lines) if route_for("POST", r["path"], "application/json")]


def differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where two JSON values differ, as JSON paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys())
                for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:200]} -> {json.dumps(b)[:200]}"]


def explain_misses(first: list[dict], second: list[dict]) -> str:
    """Each request of run 2 that run 1 did not send, against the run-1 request closest to it."""
    report = []
    for request in second:
        if request in first:
            continue
        closest = min(first, key=lambda r: len(differences(r, request)), default={})
        report.append(f"{request['path']}: " + "; ".join(differences(closest, request)))
    return "\n".join(report)


@pytest.mark.parametrize(("name", "flags", "api"), CASES)
def test_the_second_run_of_a_tool_loop_comes_from_the_cache(name, flags, api, tmp_path, certs, fake):
    chosen = framework(name)
    cache = tmp_path / "cache"
    proxy = Mitmdump(cache, certs=certs, fake=fake, scripts=(SUPPORT / "capture_addon.py", ROOT / "addon.py"),
                     extra=["--set", f"capture_file={cache / 'requests.jsonl'}"])
    try:
        before = fake.llm_calls()
        first = run(chosen, flags, proxy, tmp_path / "home")
        assert first.returncode == 0, first
        assert FINAL in first.answer, f"the tool did not run, or its result did not reach the model\n{first}"
        recorded = fake.llm_calls() - before
        assert recorded >= 2, f"{recorded} LLM calls recorded\n{first}"
        requests = llm_requests(cache)
        sent = len(requests)
        # The framework called the API and transport this case is about, and nothing else.
        assert {r["path"] for r in requests} == {api}, requests
        assert {bool(r["body"].get("stream")) for r in requests} == {"--stream" in flags}, requests

        second = run(chosen, flags, proxy, tmp_path / "home")
        assert second.returncode == 0, second
        missed = fake.llm_calls() - before - recorded
        requests = llm_requests(cache)
        assert missed == 0, (f"run 2 made {missed} LLM calls upstream:\n"
                             f"{explain_misses(requests[:sent], requests[sent:])}\n{second}")
        assert second.answer == first.answer
    finally:
        proxy.stop()
    print(f"\n{name} {' '.join(flags)}: run 1 {recorded} LLM calls in {first.seconds:.1f} s, "
          f"run 2 {missed} in {second.seconds:.1f} s ({len(requests) - sent} requests, all from the cache)")
