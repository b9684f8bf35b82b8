"""The product's central promise, tested with the real agents: set HTTPS_PROXY for Claude Code, the
Codex CLI or the Gemini CLI, and every run after the first comes from the cache; with the provider
gone, a replay still completes; a run recorded in one place, HOME and day replays in another; and a
replay miss stops the agent at once with the explanation.

The agents are pinned (tests/agents/package.json), installed by scripts/test into .cache/agents, and
configured by environment variables only (tests/support/agents.py). The fake provider plays the
model: a one-shot answer, or a tool session in which the agent's own shell tool really runs.
"""

import datetime
import json
import os
import re
import socket
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from llm_cache.endpoints import route_for
from tests.support import fake_agent
from tests.support.agents import AGENTS, Agent, libfaketime, run
from tests.support.procs import ROOT, SUPPORT, Mitmdump, explain, wait_for

TOOL_PROMPT = f"{fake_agent.TOOL_SESSION}: run the marker command"
FINAL = f"{fake_agent.FINAL_PREFIX} {fake_agent.TOOL_OUTPUT}"
CAPTURE = SUPPORT / "capture_addon.py"
DAY = datetime.timedelta(days=1)


def agent(name: str) -> Agent:
    chosen = AGENTS[name]
    if not chosen.installed():
        message = f"{name} is not installed: scripts/test installs the pinned agents into .cache/agents (needs npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return chosen


def recorder(folder: Path, certs, fake) -> Mitmdump:
    """The proxy in its default mode, the fake provider behind it, every request captured."""
    return Mitmdump(folder, certs=certs, fake=fake, scripts=(CAPTURE, ROOT / "addon.py"),
                    extra=["--set", f"capture_file={folder / 'requests.jsonl'}"])


def offline_replayer(folder: Path, certs) -> Mitmdump:
    """The same cache (folder: database and CA) in replay mode, with the provider gone: every upstream
    connection goes to a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    return Mitmdump(folder, certs=certs, upstream_https=dead, scripts=(CAPTURE, ROOT / "addon.py"),
                    extra=["--set", "llm_cache_mode=replay", "--set", f"capture_file={folder / 'requests.jsonl'}"])


def captured(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "requests.jsonl").read_text().splitlines()]


def check_answer(answer: str, tools: bool) -> None:
    if tools:
        assert FINAL in answer, "the tool did not run, or its output did not reach the model"
    else:
        assert "call #" in answer


@pytest.mark.parametrize("tools", [False, True], ids=["one-shot", "tool-session"])
@pytest.mark.parametrize("name", list(AGENTS))
def test_the_second_run_and_an_offline_replay_come_from_the_cache(name, tools, tmp_path, certs, fake):
    chosen = agent(name)
    prompt = TOOL_PROMPT if tools else f"say hello to {name}"
    home, work, cache = tmp_path / "home", tmp_path / "work", tmp_path / "cache"
    proxy = recorder(cache, certs, fake)
    try:
        before = fake.llm_calls()
        first = run(chosen, prompt, proxy, home=home, workdir=work, tools=tools)
        assert first.returncode == 0, first
        check_answer(first.answer, tools)
        recorded = fake.llm_calls() - before
        assert recorded >= (2 if tools else 1), f"{recorded} LLM calls recorded\n{first}"

        second = run(chosen, prompt, proxy, home=home, workdir=work, tools=tools)
        assert second.returncode == 0, second
        assert fake.llm_calls() - before == recorded, f"run 2 went upstream\n{second}\n{proxy.text()[-4000:]}"
        assert second.answer == first.answer
    finally:
        proxy.stop()

    replay = offline_replayer(cache, certs)
    try:
        third = run(chosen, prompt, replay, home=home, workdir=work, tools=tools)
        assert third.returncode == 0, f"{third}\n{replay.text()[-4000:]}"
        assert third.answer == first.answer
    finally:
        replay.stop()


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_session_recorded_in_one_place_replays_in_another_home_directory_and_day(name, tmp_path, certs, fake):
    chosen = agent(name)
    # The Codex CLI is a static binary, out of libfaketime's reach: its day stays (its date rule is
    # unit-tested). The others run a day later.
    days = 0 if name == "codex" else 1
    if days and libfaketime() is None:
        message = "libfaketime is missing (apt-get install faketime; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cache = tmp_path / "cache"
    laptop_home, laptop_work = tmp_path / "laptop" / "home", tmp_path / "laptop" / "src" / "project"
    ci_home, ci_work = tmp_path / "ci-runner" / "home", tmp_path / "ci-runner" / "workspace" / "project-checkout"
    proxy = recorder(cache, certs, fake)
    try:
        first = run(chosen, TOOL_PROMPT, proxy, home=laptop_home, workdir=laptop_work, tools=True)
        assert first.returncode == 0, first
        check_answer(first.answer, True)
    finally:
        proxy.stop()
    recorded = len(captured(cache))

    replay = offline_replayer(cache, certs)
    try:
        elsewhere = run(chosen, TOOL_PROMPT, replay, home=ci_home, workdir=ci_work, tools=True, days_ahead=days)
        assert elsewhere.returncode == 0, f"{elsewhere}\n{replay.text()[-4000:]}"
        assert elsewhere.answer == first.answer
    finally:
        replay.stop()
    # The requests really differed: other paths, and another day where the clock could be moved.
    laptop = json.dumps(captured(cache)[:recorded])
    ci = json.dumps(captured(cache)[recorded:])
    assert str(ci_work) in ci and str(laptop_work) not in ci and str(ci_home) in ci
    if days:
        today = datetime.datetime.now(datetime.UTC).date()
        tomorrow = today + DAY
        spelled = {"claude-code": lambda d: d.isoformat(), "gemini-cli": lambda d: f"{d:%B} {d.day}, {d.year}"}[name]
        assert spelled(today) in laptop and spelled(tomorrow) in ci and spelled(today) not in ci


@pytest.mark.parametrize("name", list(AGENTS))
def test_a_replay_miss_stops_the_agent_at_once_with_the_explanation(name, tmp_path, certs):
    chosen = agent(name)
    cache = tmp_path / "cache"
    replay = offline_replayer(cache, certs)
    try:
        result = run(chosen, f"a prompt nobody recorded for {name}", replay, home=tmp_path / "home",
                     workdir=tmp_path / "work")
    finally:
        replay.stop()
    assert result.returncode != 0, result
    assert "is not in the cache and llm_cache_mode is replay" in result.stdout + result.stderr, result
    # Each request was sent once: none was retried (the Gemini CLI asks its model router first, then
    # the model). A 5xx was retried 30 times by the Codex CLI and for 5 minutes by the Gemini CLI.
    sent = [json.dumps(r, sort_keys=True) for r in captured(cache) if route_for("POST", r["path"], "application/json")]
    assert sent and len(sent) == len(set(sent)), f"{len(sent)} LLM requests, {len(set(sent))} different\n{result}"
    # Offline, Claude Code first retries its own settings and policy endpoints for some seconds.
    assert result.seconds < 60, result
    print(f"{name}: the replay miss reported after {result.seconds:.1f} s, {len(sent)} LLM requests")


def test_a_near_miss_names_claude_codes_volatile_field_and_its_rule_makes_the_next_run_hit(tmp_path, certs, fake):
    """How a user finds the next agent's volatile fields: here Claude Code's, with its built-in
    profile replaced by one that knows nothing."""
    chosen = agent("claude-code")
    blank = 'claude-code: {match: {user_agent: ["claude-cli/*"], family: [anthropic.messages]}}'
    home, work, cache = tmp_path / "home", tmp_path / "work", tmp_path / "cache"
    proxy = Mitmdump(cache, certs=certs, fake=fake, extra=["--set", f"llm_cache_profiles={blank}"])
    try:
        runs = [run(chosen, "say hello to the near miss", proxy, home=home, workdir=work) for _ in range(2)]
        assert all(r.returncode == 0 for r in runs), runs
        pattern = re.compile(r"near miss: (\w{12}) differs from \w{12} at system\[0\]\.text: .*cc_prompt_id=")
        assert wait_for(lambda: pattern.search(proxy.text()), timeout=10), proxy.text()[-3000:]
        near = pattern.search(proxy.text())
        assert near is not None
    finally:
        proxy.stop()
    explained = explain(proxy.db_path, near.group(1))
    assert explained is not None and "cc_prompt_id=" in explained[1]
    suggested = YAML(typ="safe").load(YAML(typ="safe").load(explained[1])["llm_cache_profiles"])["claude-code"]
    mine = {"claude-code": {"match": {"user_agent": ["claude-cli/*"], "family": ["anthropic.messages"]},
                            **{k: v for k, v in suggested.items() if k in ("ignore", "volatile")}}}
    ruled = Mitmdump(cache, certs=certs, fake=fake, extra=["--set", f"llm_cache_profiles={json.dumps(mine)}"])
    try:
        before = fake.llm_calls()
        third = run(chosen, "say hello to the near miss", ruled, home=home, workdir=work)
        fourth = run(chosen, "say hello to the near miss", ruled, home=home, workdir=work)
        assert third.returncode == fourth.returncode == 0
        assert fake.llm_calls() - before == 1, "recorded once under the new rule, then a hit"
        assert fourth.answer == third.answer
    finally:
        ruled.stop()
