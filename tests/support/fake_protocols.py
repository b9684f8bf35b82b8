"""The fake provider's Gemini, Ollama and Bedrock answers (tests/support/fake_upstream.py serves them).

Each answer is either (status, JSON object) or a Stream of pieces sent one chunk at a time. The
model name picks behaviours as in fake_upstream (its _stream cuts fake-cut streams half-way):
fake-error-event (an error mid-stream), fake-tools (a tool call).
"""

import hashlib
import json
import time
from typing import Any, NamedTuple

import fake_agent


class Stream(NamedTuple):
    model: str
    pieces: list[bytes]
    content_type: str


def word_vector(text: Any, dims: int = 64) -> list[float]:
    """A deterministic embedding for the semantic tier's tests: a bag of its lower-cased words, each
    hashed to a dimension, so texts with the same words (any case, order or punctuation) get the same
    vector and texts sharing most words a close one."""
    vector = [0.0] * dims
    for word in "".join(c if c.isalnum() else " " for c in str(text).lower()).split():
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % dims] += 1.0
    return vector


def answer(path: str, query: str, body: dict, text: str, n: int,
           scripted: fake_agent.ToolCall | None = None) -> tuple[int, Any] | Stream:
    """`scripted`: the tool call of a real agent's tool session (fake_agent), made instead of text."""
    if ":" in path:
        return _gemini(path, query, body, text, n, scripted)
    if "/model/" in path:
        return 200, {"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                     "stopReason": "end_turn", "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}}
    return _ollama(path, body, text, n)


# -- Gemini ---------------------------------------------------------------------------------------

def _gemini(path: str, query: str, body: dict, text: str, n: int,
            scripted: fake_agent.ToolCall | None) -> tuple[int, Any] | Stream:
    route, _, method = path.rpartition(":")
    wrapped = route.endswith("/v1internal")  # the Gemini CLI: {"model", "project", "request": {...}}
    model = body.get("model", "") if wrapped else route.rsplit("/", 1)[-1]
    request = body["request"] if wrapped else body
    if method == "embedContent":
        return 200, {"embedding": {"values": [n / 1000, 0.5, -0.25]}}
    if method == "batchEmbedContents":
        return 200, {"embeddings": [{"values": [n / 1000, 0.5, -0.25]} for _ in body.get("requests") or ()]}
    config = request.get("generationConfig") or {}
    if config.get("responseMimeType") == "application/json":  # the Gemini CLI's model router asks for JSON
        text = json.dumps(_fill(config.get("responseJsonSchema") or config.get("responseSchema") or {}))
    elif not text.startswith(fake_agent.FINAL_PREFIX):
        parts = (request.get("contents") or [{}])[-1].get("parts") or [{}]
        text = f"call #{n}: {parts[-1].get('text', '')}"
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 6, "totalTokenCount": 10}

    def chunk(content_parts: list[dict], finish: str | None) -> dict:
        candidate: dict[str, Any] = {"content": {"parts": content_parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        payload = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                   "responseId": f"gemini-{n}"}
        return {"response": payload, "traceId": f"trace-{n}"} if wrapped else payload

    content: list[dict[str, Any]]
    calls = scripted is not None or model == "fake-tools"
    if calls:
        name, arguments, _ = scripted or fake_agent.ToolCall("get_weather", {"city": "Paris", "n": n})
        content = [{"functionCall": {"name": name, "args": arguments}}]
    else:
        content = [{"text": text}]
    if method == "generateContent":
        return 200, chunk(content, "STOP")
    words = pieces(text) if not calls else []
    chunks = [chunk([{"text": w}], None) for w in words] + [chunk(content if not words else [{"text": ""}], "STOP")]
    if model == "fake-error-event":
        chunks.insert(1, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    if "alt=sse" in query.split("&"):
        return Stream(model, [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks], "text/event-stream")
    array = [(b"[" if i == 0 else b",\r\n") + json.dumps(c).encode() for i, c in enumerate(chunks)]
    return Stream(model, array + [b"]"], "application/json; charset=UTF-8")


def _fill(schema: dict) -> Any:
    """A value that fits a JSON schema: the first of an enum, 10 for integers, "fake" for strings."""
    kind = str(schema.get("type") or "").upper()
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "OBJECT":
        return {name: _fill(sub) for name, sub in (schema.get("properties") or {}).items()}
    return {"INTEGER": 10, "NUMBER": 0.1, "BOOLEAN": False, "ARRAY": []}.get(kind, "fake")


# -- Ollama ---------------------------------------------------------------------------------------

def _ollama(path: str, body: dict, text: str, n: int) -> tuple[int, Any] | Stream:
    model = body.get("model", "")
    if path.endswith("/api/embed"):
        vector = word_vector(body.get("input")) if model == "fake-embed-words" else [n / 1000, 0.5, -0.25]
        return 200, {"model": model, "embeddings": [vector], "total_duration": 1000 + n}
    if path.endswith("/api/embeddings"):
        return 200, {"embedding": [n / 1000, 0.5, -0.25]}
    chat = path.endswith("/api/chat")
    now = time.time_ns()  # volatile on purpose: created_at and durations differ on every call

    def line(piece: str, done: bool) -> dict:
        obj: dict[str, Any] = {"model": model, "created_at": f"2026-11-22T10:00:00.{now % 10**9:09d}Z"}
        if chat:
            obj["message"] = {"role": "assistant", "content": piece}
        else:
            obj["response"] = piece
        obj["done"] = done
        if done:
            obj.update(done_reason="stop", total_duration=now % 10**6, load_duration=n, prompt_eval_count=5,
                       prompt_eval_duration=now % 997, eval_count=7, eval_duration=now % 991)
            if not chat:
                obj["context"] = [1, 2, 3]
        return obj

    tools = chat and model == "fake-tools"
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris", "n": n}}}
    if body.get("stream") is False:
        whole = line("" if tools else text, True)
        if tools:
            whole["message"]["tool_calls"] = [call]
        return 200, whole
    lines = [line(w, False) for w in ([] if tools else pieces(text))]
    if tools:
        lines.append({**line("", False), "message": {"role": "assistant", "content": "", "tool_calls": [call]}})
    lines.append(line("", True))
    if model == "fake-error-event":
        lines.insert(1, {"error": "model runner has unexpectedly stopped"})
    return Stream(model, [json.dumps(obj).encode() + b"\n" for obj in lines], "application/x-ndjson")


def pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
