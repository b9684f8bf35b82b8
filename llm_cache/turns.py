"""The last turn of a conversation, for the semantic tier: its text (what is embedded) and the rest
of the request with that text taken out (the context: everything else the key is made of).

A request is eligible only when its last turn is plain text from the user: any other part in that
turn (an image, a file, a tool call) makes it ineligible, and so does a tool result unless
`tool_results` allows it. Every other message, the system prompt, tools and parameters stay in the
context, so a semantic match can never answer another model, system or conversation.
"""

from typing import Any, NamedTuple

import orjson

from llm_cache.endpoints import Family

# What the last turn's text is replaced with in the context: no request says this.
PLACEHOLDER = "\x00llm-cache:last-turn\x00"


class LastTurn(NamedTuple):
    text: str  # the text to embed
    context: dict[str, Any]  # the body with that text replaced by PLACEHOLDER


def last_turn(family: Family, body: Any, *, tool_results: bool = False) -> LastTurn | None:
    """The last turn's text and the context, or None when the request is not eligible."""
    if not isinstance(body, dict):
        return None
    if family in (Family.OPENAI_CHAT, Family.OLLAMA_CHAT, Family.ANTHROPIC_MESSAGES):
        return _in_list(body, "messages", lambda m: _message_text(family, m, tool_results))
    if family is Family.OPENAI_RESPONSES:
        if isinstance(body.get("input"), str):
            return _whole(body, "input")
        return _in_list(body, "input", lambda item: _responses_text(item, tool_results))
    if family is Family.GEMINI_GENERATE:
        return _in_list(body, "contents", lambda content: _gemini_text(content, tool_results))
    if family in (Family.OPENAI_COMPLETIONS, Family.OLLAMA_GENERATE):
        if family is Family.OLLAMA_GENERATE and body.get("images"):
            return None
        return _whole(body, "prompt")
    return None


def _whole(body: dict[str, Any], field: str) -> LastTurn | None:
    text = body.get(field)
    if not isinstance(text, str) or not text.strip():
        return None
    return LastTurn(text, {**body, field: PLACEHOLDER})


def _in_list(body: dict[str, Any], field: str, text_of: Any) -> LastTurn | None:
    items = body.get(field)
    if not isinstance(items, list) or not items or not isinstance(items[-1], dict):
        return None
    found = text_of(items[-1])
    if found is None:
        return None
    text, replaced = found
    if not text.strip():
        return None
    return LastTurn(text, {**body, field: [*items[:-1], replaced]})


def _message_text(family: Family, message: dict[str, Any], tool_results: bool) -> tuple[str, dict[str, Any]] | None:
    """OpenAI chat, Ollama chat, Anthropic messages: a user message of text parts (or, allowed, a
    tool result)."""
    role = message.get("role")
    if role == "tool" and tool_results and family is not Family.ANTHROPIC_MESSAGES:
        text = _text_parts(message.get("content"), ("text",))
    elif role == "user" and not message.get("images"):  # Ollama puts images beside the content
        kinds = ("text", "tool_result") if tool_results else ("text",)
        text = _text_parts(message.get("content"), kinds)
    else:
        return None
    return None if text is None else (text, {**message, "content": PLACEHOLDER})


def _responses_text(item: dict[str, Any], tool_results: bool) -> tuple[str, dict[str, Any]] | None:
    if item.get("type") == "function_call_output" and tool_results and isinstance(item.get("output"), str):
        return item["output"], {**item, "output": PLACEHOLDER}
    if item.get("role") != "user" or item.get("type", "message") != "message":
        return None
    text = _text_parts(item.get("content"), ("input_text", "text"))
    return None if text is None else (text, {**item, "content": PLACEHOLDER})


def _gemini_text(content: dict[str, Any], tool_results: bool) -> tuple[str, dict[str, Any]] | None:
    if content.get("role", "user") != "user" or not isinstance(content.get("parts"), list):
        return None
    texts = []
    for part in content["parts"]:
        if not isinstance(part, dict):
            return None
        if isinstance(part.get("text"), str) and len(part) == 1:
            texts.append(part["text"])
        elif tool_results and "functionResponse" in part and len(part) == 1:
            texts.append(orjson.dumps(part["functionResponse"], option=orjson.OPT_SORT_KEYS).decode())
        else:
            return None
    return ("\n".join(texts), {**content, "parts": [{"text": PLACEHOLDER}]}) if texts else None


def _text_parts(content: Any, kinds: tuple[str, ...]) -> str | None:
    """The text of a message's content: a string, or a list of parts all of the allowed kinds (a
    tool result's own content: a string or text parts)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in kinds:
            return None
        if part["type"] == "tool_result":
            inner = _text_parts(part.get("content"), ("text",))
            if inner is None:
                return None
            texts.append(inner)
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            return None
    return "\n".join(texts)
