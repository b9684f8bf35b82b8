"""The fake provider's part in a real agent's tool session (Claude Code, Codex CLI, Gemini CLI), or a
framework's tool loop (openai-agents, LangChain, LiteLLM, Pydantic AI, the Vercel AI SDK).

A prompt that carries TOOL_SESSION asks for one tool call, its result, and a final answer:

- while the conversation holds no tool result, the answer calls the agent's own shell tool (found
  among the tools the request offers) to run SHELL_COMMAND, or else the framework test's WEATHER_TOOL
  for WEATHER_CITY;
- once it holds one, the answer is FINAL_PREFIX followed by the start of that result, so a test
  can see that the tool really ran and that the agent sent its output back.

Plain data in, plain data out: fake_upstream.py frames it in each protocol's wire format.
"""

import json
from typing import Any, NamedTuple

TOOL_SESSION = "llm-cache-tool-session"
TOOL_OUTPUT = "llm-cache-tool-ok"
SHELL_COMMAND = f"echo {TOOL_OUTPUT}"
FINAL_PREFIX = "tool session done:"
WEATHER_TOOL = "get_weather"  # what the framework tests offer: {"city": string}
WEATHER_CITY = "Paris"


class ToolCall(NamedTuple):
    name: str
    arguments: dict[str, Any]
    custom: str | None = None  # the input of a freeform (custom) tool, instead of JSON arguments


# Each agent's shell tool, and how it takes a command line. The Codex CLI's default model works in
# "code mode": its one tool is `exec`, a freeform tool that runs JavaScript calling the others.
_CODE_MODE = ToolCall("exec", {}, f"const r = await tools.exec_command({{cmd: {json.dumps(SHELL_COMMAND)}}}); "
                                  "text(r.output);")
_SHELL_TOOLS: dict[str, ToolCall] = {
    "Bash": ToolCall("Bash", {"command": SHELL_COMMAND, "description": "Print a marker"}),  # Claude Code
    "exec": _CODE_MODE,  # Codex CLI, code mode
    "exec_command": ToolCall("exec_command", {"cmd": SHELL_COMMAND}),  # Codex CLI, other models
    "shell": ToolCall("shell", {"command": ["bash", "-lc", SHELL_COMMAND]}),  # older Codex CLIs
    "run_shell_command": ToolCall("run_shell_command", {"command": SHELL_COMMAND,  # Gemini CLI
                                                        "description": "Print a marker"}),
}
# A framework's tool loop offers a function tool of the test's own, after any shell tool.
_TOOLS = {**_SHELL_TOOLS, WEATHER_TOOL: ToolCall(WEATHER_TOOL, {"city": WEATHER_CITY})}


class Turn(NamedTuple):
    """What the fake answers: text, or a tool call."""

    text: str | None
    call: ToolCall | None


def scripted_turn(body: dict[str, Any]) -> Turn | None:
    """The scripted answer to a request of a tool session, or None for any other request."""
    if TOOL_SESSION not in _user_text(body):
        return None
    result = _tool_result(body)
    if result is not None:
        seen = TOOL_OUTPUT if TOOL_OUTPUT in result else " ".join(result.split())[:80]
        return Turn(f"{FINAL_PREFIX} {seen}", None)
    names = _tool_names(body)
    for name, call in _TOOLS.items():
        if name in names:
            return Turn(None, call)
    return Turn(f"{FINAL_PREFIX} no known tool offered (tools: {', '.join(sorted(names)) or 'none'})", None)


def _inner(body: dict[str, Any]) -> dict[str, Any]:
    """The Gemini CLI wraps its request in {"model", "project", "request": {...}}."""
    return body["request"] if isinstance(body.get("request"), dict) else body


def _user_text(body: dict[str, Any]) -> str:
    """Every text the user side of the conversation holds (without the system prompt or tools)."""
    inner = _inner(body)
    turns = inner.get("messages") or inner.get("contents") or inner.get("input") or []
    if isinstance(turns, str):
        return turns
    user = [turn for turn in turns if isinstance(turn, dict) and turn.get("role") == "user"]
    return json.dumps(user)


def _tool_names(body: dict[str, Any]) -> set[str]:
    inner = _inner(body)
    tools = list(inner.get("tools") or [])
    for item in inner.get("input") or []:  # the Codex CLI offers its tools in an input item
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            tools += item.get("tools") or []
    names = set()
    while tools:
        tool = tools.pop()
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "namespace":
            tools += tool.get("tools") or []
        if isinstance(tool.get("name"), str):  # Anthropic, Responses
            names.add(tool["name"])
        for declaration in tool.get("functionDeclarations") or []:  # Gemini
            names.add(declaration.get("name"))
        function = tool.get("function")  # chat completions
        if isinstance(function, dict):
            names.add(function.get("name"))
    return names


def _tool_result(body: dict[str, Any]) -> str | None:
    """The text of the latest tool result in the conversation, or None when it holds none."""
    inner = _inner(body)
    found = None
    for turn in inner.get("messages") or inner.get("contents") or inner.get("input") or []:
        if not isinstance(turn, dict):
            continue
        if turn.get("type") in ("function_call_output", "custom_tool_call_output"):  # Responses
            found = _text_of(turn.get("output"))
        elif turn.get("role") == "tool":  # chat completions
            found = _text_of(turn.get("content"))
            continue
        for part in turn.get("content") or turn.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "tool_result":  # Anthropic
                found = _text_of(part.get("content"))
            elif "functionResponse" in part:  # Gemini
                found = _text_of(part["functionResponse"].get("response"))
    return found


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(v.get("text", v) if isinstance(v, dict) else v) for v in value)
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    return str(value)
