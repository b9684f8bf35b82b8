"""Ollama /api/chat and /api/generate: NDJSON streams (one JSON object per line, the last one
`"done": true` with the counts and durations), a JSON answer from a stream and back.

Streaming is Ollama's default: a request without `"stream": false` streams. `created_at` and the
durations differ on every call; nothing here depends on them.
"""

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

# Text that arrives in pieces: /api/chat's message fields and /api/generate's top-level ones.
_CHAT_TEXT = ("content", "thinking")
_GENERATE_TEXT = ("response", "thinking")


def lines(body: bytes) -> Iterator[Any]:
    """Each JSON line of an NDJSON body; raises ValueError on a line that is not JSON."""
    for line in body.splitlines():
        if line.strip():
            yield orjson.loads(line)


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


def stream_problem(body: bytes) -> str | None:
    try:
        objects = list(lines(body))
    except ValueError:
        return "stream has a line that is not JSON"
    if any(not isinstance(obj, dict) or obj.get("error") for obj in objects):
        return "stream carries an error"
    if not objects or objects[-1].get("done") is not True:
        return 'stream ended before "done": true'
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The answer to `"stream": false`: the final line's counts with the pieces joined."""
    objects = [obj for obj in lines(body) if isinstance(obj, dict)]
    final = dict(objects[-1])
    if any("message" in obj for obj in objects):
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        for obj in objects:
            piece = obj.get("message") or {}
            for field, value in piece.items():
                if field in _CHAT_TEXT:
                    message[field] = message.get(field, "") + (value or "")
                elif field == "tool_calls" and value:
                    message["tool_calls"] = message.get("tool_calls", []) + list(value)
                elif value is not None:
                    message[field] = value
        final["message"] = message
    else:
        for field in _GENERATE_TEXT:
            if any(field in obj for obj in objects):
                final[field] = "".join(obj.get(field) or "" for obj in objects)
    return final


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
