"""The real agents, as a user runs them: installed from npm (tests/agents/package.json, pinned; scripts/test
installs them into .cache/agents), pointed at the proxy by environment variables only, in a HOME and
a working directory of the test's choosing, optionally on another day (libfaketime).

Each agent answers a one-shot prompt with the fake provider's text ("call #N: ..."), and a prompt
carrying fake_agent.TOOL_SESSION with a tool session: the agent's own shell tool runs, its output
goes back, and the final answer says so (fake_agent.FINAL_PREFIX).
"""

import glob
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tests.support.procs import ROOT, Mitmdump, clean_env

NODE_MODULES = ROOT / ".cache" / "agents" / "node_modules"
BIN = NODE_MODULES / ".bin"


class Agent(NamedTuple):
    name: str  # the profile it is recognised as
    command: Callable[[str, bool], list[str]]  # (prompt, tools allowed) -> argv
    env: dict[str, str]  # what the agent needs beyond the proxy variables
    binary: Path  # what must be installed

    def installed(self) -> bool:
        return self.binary.exists()


def _claude(prompt: str, tools: bool) -> list[str]:
    # --dangerously-skip-permissions is refused as root; allowing the one tool works for everyone.
    return [str(BIN / "claude"), "-p", prompt] + (["--allowedTools", "Bash"] if tools else [])


def _codex(prompt: str, tools: bool) -> list[str]:
    bypass = ["--dangerously-bypass-approvals-and-sandbox"] if tools else []
    return [str(BIN / "codex"), "exec", "--skip-git-repo-check", *bypass, prompt]


GEMINI_CLI = NODE_MODULES / "@google" / "gemini-cli" / "bundle" / "gemini.js"


def _gemini(prompt: str, tools: bool) -> list[str]:
    return [str(BIN / "node"), str(GEMINI_CLI), "-p", prompt] + (["--yolo"] if tools else [])


AGENTS = {
    "claude-code": Agent("claude-code", _claude, {"ANTHROPIC_API_KEY": "sk-ant-api03-E2EAGENTKEY"}, BIN / "claude"),
    "codex": Agent("codex", _codex, {"OPENAI_API_KEY": "sk-proj-E2EAGENTKEY"}, BIN / "codex"),
    "gemini-cli": Agent("gemini-cli", _gemini, {"GEMINI_API_KEY": "AIzaE2EAGENTKEY",
                                                "GEMINI_CLI_TRUST_WORKSPACE": "true"}, BIN / "node"),
}


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def answer(self) -> str:
        return self.stdout.strip()

    def __str__(self) -> str:
        tail = self.stderr[-3000:]
        return f"rc {self.returncode} after {self.seconds:.1f} s\nstdout:\n{self.stdout}\nstderr:\n{tail}"


def libfaketime() -> str | None:
    """Debian's libfaketime, which shifts the clock of a dynamically linked program (Node, Claude
    Code's binary; not the Codex CLI's static one)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    return found[0] if found else None


def run(agent: Agent, prompt: str, proxy: Mitmdump, *, home: Path, workdir: Path, tools: bool = False,
        days_ahead: int = 0, timeout: float = 180) -> Run:
    """Run the agent once, as a new process, configured by environment variables only."""
    home.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    env = clean_env(**proxy.client_env(), **agent.env, HOME=str(home), NODE_USE_ENV_PROXY="1",
                    PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "CODEX_API_KEY",
                 "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI", "XDG_CONFIG_HOME", "CLAUDE_CONFIG_DIR",
                 "CODEX_HOME", "GEMINI_MODEL"):
        if name not in agent.env:
            env.pop(name, None)
    if days_ahead:
        library = libfaketime()
        assert library, "libfaketime is missing: apt-get install faketime"
        env.update(LD_PRELOAD=library, FAKETIME=f"+{days_ahead}d", DONT_FAKE_MONOTONIC="1")
    started = time.monotonic()
    result = subprocess.run(agent.command(prompt, tools), cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
