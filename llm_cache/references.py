"""Tool-call ids, renumbered where the protocol makes them references between a call and its result.

A model makes up a new id for every tool call (`call_…`, `toolu_…`; the Gemini CLI makes its own,
`<name>_<epoch ms>_<n>`), so the next request of an agent's tool loop quotes ids that differ on every
run. Only the pairing matters: which result answers which call. Each id is replaced by its order of
first appearance (`<id:1>`, `<id:2>`, …) in exactly these places, and nowhere else: never inside a
tool's arguments or input, a schema, or text, where an id is the user's data.

    OpenAI chat, Ollama   messages[*].tool_calls[*].id         <-> messages[*].tool_call_id
    Anthropic             content blocks *tool_use.id           <-> *tool_result.tool_use_id
    OpenAI Responses      input[*].call_id (calls and outputs), and input[*].id (item ids)
    Gemini                contents[*].parts[*].functionCall.id  <-> functionResponse.id
"""

from typing import Any

from llm_cache.endpoints import Family

_CHAT = frozenset({Family.OPENAI_CHAT, Family.OLLAMA_CHAT})


class _Numbering:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def renumber(self, holder: dict[str, Any], field: str) -> None:
        value = holder.get(field)
        if isinstance(value, str):
            holder[field] = self.ids.setdefault(value, f"<id:{len(self.ids) + 1}>")


def renumber(body: dict[str, Any], family: Family | None) -> None:
    """Renumber the tool-call ids of a canonical body (in place)."""
    numbering = _Numbering()
    if family in _CHAT:
        _chat(body, numbering)
    elif family is Family.ANTHROPIC_MESSAGES:
        _anthropic(body, numbering)
    elif family is Family.OPENAI_RESPONSES:
        _responses(body, numbering)
    elif family is Family.GEMINI_GENERATE:
        _gemini(body.get("request") if isinstance(body.get("request"), dict) else body, numbering)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _chat(body: dict[str, Any], numbering: _Numbering) -> None:
    for message in _dicts(body.get("messages")):
        for call in _dicts(message.get("tool_calls")):
            numbering.renumber(call, "id")
        numbering.renumber(message, "tool_call_id")


def _anthropic(body: dict[str, Any], numbering: _Numbering) -> None:
    for message in _dicts(body.get("messages")):
        for block in _dicts(message.get("content")):
            kind = block.get("type")
            if not isinstance(kind, str):
                continue
            if kind.endswith("tool_use"):  # tool_use, server_tool_use, mcp_tool_use
                numbering.renumber(block, "id")
            elif kind.endswith("tool_result"):  # tool_result, web_search_tool_result, mcp_tool_result, ...
                numbering.renumber(block, "tool_use_id")


def _responses(body: dict[str, Any], numbering: _Numbering) -> None:
    # Item ids are the server's (or, for the Codex CLI, the client's) names for turns; the model never
    # sees them, and an item_reference quotes one, so they share the numbering.
    for item in _dicts(body.get("input")):
        numbering.renumber(item, "id")
        numbering.renumber(item, "call_id")


def _gemini(body: Any, numbering: _Numbering) -> None:
    if not isinstance(body, dict):
        return
    for content in _dicts(body.get("contents")):
        for part in _dicts(content.get("parts")):
            for field in ("functionCall", "functionResponse"):
                if isinstance(part.get(field), dict):
                    numbering.renumber(part[field], "id")
