"""Ollama /api/chat and /api/generate: NDJSON streams (one JSON object per line, the last one
`"done": true` with the counts and durations), a JSON answer from a stream and back.

Streaming is Ollama's default: a request without `"stream": false` streams. `created_at` and the
durations differ on every call; nothing here depends on them.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from llm_cache import sse

# Text that arrives in pieces: /api/chat's message fields and /api/generate's top-level ones.
_CHAT_TEXT = ("content", "thinking")
_GENERATE_TEXT = ("response", "thinking")


def lines(body: bytes) -> Iterator[Any]:
    """Each JSON line of an NDJSON body; raises ValueError on a line that is not JSON."""
    loads = orjson.loads
    for line in body.splitlines():
        if line and not line.isspace():  # the same test as `line.strip()`, without copying the line
            yield loads(line)


def encode(objects: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(obj) + b"\n" for obj in objects)


def json_problem(answer: dict[str, Any], field: str) -> str | None:
    if answer.get("error"):
        return "response carries an error"
    if field not in answer:
        return f"response has no {field!r}"
    if "done" in answer and answer["done"] is not True:
        return "response is not done"
    return None


def _line_problem(line: Any) -> str | None:
    return None if isinstance(line, dict) and not line.get("error") else "stream carries an error"


def stream_problem(body: bytes) -> str | None:
    problem, last = sse.check(lines(body), _line_problem, not_json="stream has a line that is not JSON")
    if problem is not None:
        return problem
    if last is None or last.get("done") is not True:
        return 'stream ended before "done": true'
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The answer to `"stream": false`: the final line's counts with the pieces joined."""
    objects = [obj for obj in lines(body) if isinstance(obj, dict)]
    final = dict(objects[-1])
    if any("message" in obj for obj in objects):
        final["message"] = _chat_message(objects)
    else:
        for field in _GENERATE_TEXT:
            if any(field in obj for obj in objects):
                final[field] = "".join(obj.get(field) or "" for obj in objects)
    return final


def _chat_message(objects: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    texts: dict[str, list[str]] = {"content": []}  # joined once at the end: `+=` per line is quadratic
    calls: list[Any] | None = None  # the list in message["tool_calls"] once this function made it
    for obj in objects:
        piece = obj.get("message") or {}
        for field, value in piece.items():
            if field in _CHAT_TEXT:
                parts = texts.get(field)
                if parts is None:
                    parts = texts[field] = []
                    message[field] = ""  # its place among the keys
                if type(value) is str:
                    parts.append(value)
                elif value:  # what adding it to the text would have raised
                    raise TypeError(f'can only concatenate str (not "{type(value).__name__}") to str')
            elif field == "tool_calls" and value:
                if calls is not None and message["tool_calls"] is calls:
                    calls.extend(value)
                else:  # the first calls, or after a falsy value replaced them (as `+` would, or TypeError)
                    calls = message["tool_calls"] = message.get("tool_calls", []) + list(value)
            elif value is not None:
                message[field] = value
    for field, parts in texts.items():
        message[field] = "".join(parts)
    return message


def synthesise(answer: dict[str, Any]) -> bytes:
    """Two lines: the whole text, then the final `"done": true` line with the counts."""
    first = {"model": answer.get("model"), "created_at": answer.get("created_at"), "done": False}
    final = dict(answer)
    if "message" in answer:
        first["message"] = answer["message"]
        final["message"] = {"role": answer["message"].get("role", "assistant"), "content": ""}
    else:
        for field in _GENERATE_TEXT:
            if field in answer:
                first[field] = answer[field]
                final[field] = ""
    return encode([first, final])
