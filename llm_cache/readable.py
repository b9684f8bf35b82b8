"""An entry's request and answer as people read them (scripts/llm-cache show, mitmweb's LLM view): system prompt,
tools, each turn with its role, tool calls and their results, for every protocol the cache knows."""

import json
from typing import Any


def request_lines(body: Any) -> list[str]:
    """A request body as people read it: system, tools, then each turn with its role."""
    if not isinstance(body, dict):
        return [_compact(body)]
    if isinstance(body.get("request"), dict):  # the Gemini CLI's envelope
        body = body["request"]
    lines: list[str] = []
    system = body.get("system") or body.get("instructions") or body.get("systemInstruction")
    if system:
        lines += _block("system", _text(system))
    if body.get("tools"):
        lines.append("tools: " + ", ".join(_tool_names(body["tools"])))
    for role, text in _turns(body):
        lines += _block(role, text)
    return lines or [_compact(body)]


def answer_lines(answer: Any) -> list[str]:
    """An answer as people read it: each choice, content block or output item with its role."""
    if not isinstance(answer, dict):
        return [answer if isinstance(answer, str) else _compact(answer)]
    if isinstance(answer.get("response"), dict):  # the Gemini CLI's envelope
        answer = answer["response"]
    turns: list[tuple[str, str]] = []
    if isinstance(answer.get("choices"), list):
        for choice in answer["choices"]:
            if isinstance(choice.get("message"), dict):
                turns.append(_message(choice["message"]))
            elif "text" in choice:
                turns.append(("completion", str(choice["text"])))
    elif isinstance(answer.get("content"), list):
        turns.append((str(answer.get("role", "assistant")), _text(answer["content"])))
    elif isinstance(answer.get("output"), list):
        turns += _items(answer["output"])
    elif isinstance(answer.get("candidates"), list):
        turns += [(str(c.get("content", {}).get("role", "model")), _text(c.get("content", {})))
                  for c in answer["candidates"] if isinstance(c, dict)]
    elif isinstance(answer.get("message"), dict):
        turns.append(_message(answer["message"]))
    elif isinstance(answer.get("response"), str):
        turns.append(("assistant", answer["response"]))
    lines = [line for role, text in turns for line in _block(role, text)]
    return lines or [json.dumps(answer, indent=2, ensure_ascii=False)]


def _turns(body: dict[str, Any]) -> list[tuple[str, str]]:
    if isinstance(body.get("messages"), list):
        return [_message(m) if isinstance(m, dict) else ("message", _text(m)) for m in body["messages"]]
    if isinstance(body.get("contents"), list):
        return [(str(c.get("role", "user")), _text(c)) if isinstance(c, dict) else ("user", _text(c))
                for c in body["contents"]]
    if isinstance(body.get("input"), list):
        return _items(body["input"])
    for name in ("input", "prompt"):
        if name in body:
            return [(name if name == "prompt" else "user", _text(body[name]))]
    return []


def _items(items: list[Any]) -> list[tuple[str, str]]:
    """Responses input or output items (and embedding inputs)."""
    turns = []
    for item in items:
        if not isinstance(item, dict):
            turns.append(("input", _text(item)))
        elif "role" in item:
            turns.append((str(item["role"]), _text(item.get("content"))))
        elif item.get("type") == "function_call":
            turns.append(("assistant", f"→ {item.get('name')}({item.get('arguments', '')})"))
        elif item.get("type") == "function_call_output":
            turns.append(("tool", f"← {_text(item.get('output'))}"))
        elif item.get("type") == "reasoning":
            turns.append(("reasoning", _text(item.get("summary") or [])))
        else:
            turns.append((str(item.get("type", "item")), _compact(item)))
    return turns


def _message(message: dict[str, Any]) -> tuple[str, str]:
    parts = [_text(message.get("content"))] if message.get("content") not in (None, "", []) else []
    for call in message.get("tool_calls") or []:
        function = call.get("function", call) if isinstance(call, dict) else {}
        arguments = function.get("arguments", "")
        parts.append(f"→ {function.get('name')}({arguments if isinstance(arguments, str) else _compact(arguments)})")
    role = str(message.get("role", "message"))
    if message.get("tool_call_id"):
        role += f" ({message['tool_call_id']})"
    return role, "\n".join(parts)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_part(part) for part in value)
    if isinstance(value, dict):
        return _text(value["parts"]) if "parts" in value else _part(value)
    return "" if value is None else _compact(value)


def _part(part: Any) -> str:
    if not isinstance(part, dict):
        return _text(part)
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return part["text"]
    if kind in ("tool_use", "server_tool_use"):
        return f"→ {part.get('name')}({_compact(part.get('input'))})"
    if kind == "tool_result":
        return f"← {_text(part.get('content'))}"
    if kind == "thinking":
        return f"(thinking) {part.get('thinking', '')}"
    if "functionCall" in part:
        return f"→ {part['functionCall'].get('name')}({_compact(part['functionCall'].get('args'))})"
    if "functionResponse" in part:
        return f"← {part['functionResponse'].get('name')}: {_compact(part['functionResponse'].get('response'))}"
    if kind in ("image", "image_url", "input_image") or "inlineData" in part:
        return "[image]"
    return _compact(part)


def _tool_names(tools: Any) -> list[str]:
    names: list[str] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if isinstance(tool.get("functionDeclarations"), list):
            names += [str(d.get("name")) for d in tool["functionDeclarations"] if isinstance(d, dict)]
        else:
            function: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) else tool
            names.append(str(function.get("name") or tool.get("type")))
    return names


def _block(role: str, text: str) -> list[str]:
    return [f"[{role}]"] + ["  " + line for line in (text or "").splitlines() or [""]]


def _compact(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def embedding_lines(answer: Any) -> list[str]:
    """An embeddings answer as people read it: how many vectors of how many dimensions, not the
    numbers (OpenAI's `data`, Gemini's `embedding`/`embeddings`, Ollama's `embeddings`/`embedding`)."""
    if not isinstance(answer, dict):
        return [_compact(answer)]
    vectors: list[Any] = []
    if isinstance(answer.get("data"), list):
        vectors = [item.get("embedding") for item in answer["data"] if isinstance(item, dict)]
    elif isinstance(answer.get("embeddings"), list):
        vectors = [v.get("values") if isinstance(v, dict) else v for v in answer["embeddings"]]
    elif "embedding" in answer:
        single = answer["embedding"]
        vectors = [single.get("values") if isinstance(single, dict) else single]
    sizes = sorted({len(v) for v in vectors if isinstance(v, list)})
    if not sizes:
        return [_compact(answer)]
    dimensions = " or ".join(str(size) for size in sizes)
    return [f"{len(vectors)} embedding{'s' if len(vectors) != 1 else ''} of {dimensions} dimensions"]
