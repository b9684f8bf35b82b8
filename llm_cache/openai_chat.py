"""OpenAI chat/completions streams (also every OpenAI-compatible host, and Mistral-style FIM):
completeness, assembly of a `chat.completion` from chunks, and synthesis of chunks from one."""

from collections.abc import Iterable
from typing import Any

from llm_cache import sse

DONE = "[DONE]"


def stream_problem(body: bytes) -> str | None:
    """Why a recorded chunk stream (chat or legacy completions) must not be stored, or None when it is
    complete: it ends in `[DONE]` or, for the OpenAI-compatible servers that never send `[DONE]`,
    every choice it opened reached a finish_reason before the body ended cleanly."""
    finished: dict[int, bool] = {}
    problem, last = sse.check((data for _, data in sse.json_events(body, done_marker=DONE)),
                              lambda data: _chunk_problem(data, finished) if isinstance(data, dict) else None)
    if problem is not None:
        return problem
    if last == DONE or (finished and all(finished.values())):
        return None
    return "stream ended before [DONE]"


def _chunk_problem(chunk: dict[str, Any], finished: dict[int, bool]) -> str | None:
    """An error the chunk reports; notes in `finished` which choices it finishes."""
    if chunk.get("error"):  # OpenRouter and others report a failure mid-stream, still with HTTP 200
        return "stream carries an error event"
    for choice in chunk.get("choices") or ():
        if choice.get("finish_reason") == "error":
            return "stream carries an error event"
        index = choice.get("index", 0)
        finished[index] = finished.get(index, False) or choice.get("finish_reason") is not None
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The `chat.completion` object the provider would have returned for the same request."""
    return assemble_chunks(chunk for _, chunk in sse.json_events(body, done_marker=DONE))


def assemble_chunks(chunks: Iterable[Any]) -> dict[str, Any]:
    """`assemble`, from the parsed events of a stream (non-objects, such as `[DONE]`, are skipped)."""
    result: dict[str, Any] = {"id": None, "object": "chat.completion", "created": None, "model": None}
    choices: dict[int, dict[str, Any]] = {}
    tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
    pieces = sse.Pieces()
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        merge_envelope(result, chunk, ("id", "created", "model", "system_fingerprint", "service_tier"))
        for delta_choice in chunk.get("choices") or ():
            index = delta_choice.get("index", 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = {"index": index, "message": {"role": "assistant", "content": None},
                                           "logprobs": None, "finish_reason": None}
            calls = tool_calls.get(index)
            if calls is None:
                calls = tool_calls[index] = {}
            _merge_delta(choice["message"], delta_choice.get("delta") or {}, calls, pieces)
            if delta_choice.get("finish_reason") is not None:
                choice["finish_reason"] = delta_choice["finish_reason"]
            if delta_choice.get("logprobs"):
                choice["logprobs"] = merge_logprobs(choice["logprobs"], delta_choice["logprobs"])
    pieces.finish()
    for index, calls in tool_calls.items():
        if calls:
            choices[index]["message"]["tool_calls"] = [calls[i] for i in sorted(calls)]
    result["choices"] = [choices[i] for i in sorted(choices)]
    return result


def _merge_delta(message: dict[str, Any], delta: dict[str, Any], calls: dict[int, dict[str, Any]],
                 pieces: sse.Pieces) -> None:
    for field, value in delta.items():
        if field == "tool_calls":
            for call_delta in value or ():
                _merge_tool_call(calls, call_delta, pieces)
        elif field == "role":
            message["role"] = value or message["role"]
        elif isinstance(value, str):  # content, refusal, reasoning_content, …: text arrives in pieces
            pieces.add(message, field, value, none_is_empty=True)
        elif value is not None:
            pieces.drop(message, field)
            message[field] = value


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any], pieces: sse.Pieces) -> None:
    index = delta.get("index", 0)
    call = calls.get(index)
    if call is None:
        call = calls[index] = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    for part in ("name", "arguments"):
        if function.get(part):
            pieces.add(call["function"], part, function[part], in_place=True)


def merge_envelope(result: dict[str, Any], chunk: dict[str, Any], fields: tuple[str, ...]) -> None:
    """The completion's own fields, as the latest chunk that carries each has them (Azure's first
    chunk has them empty), and the usage chunk's usage."""
    for field in fields:
        if chunk.get(field) is not None:
            result[field] = chunk[field]
    if chunk.get("usage"):
        result["usage"] = chunk["usage"]


def merge_logprobs(merged: dict[str, Any] | None, piece: dict[str, Any]) -> dict[str, Any]:
    """Logprobs arrive per chunk: their lists are concatenated. `merged` is the previous result, which
    is extended in place (copying it per chunk made a long stream quadratic)."""
    if not merged:
        merged = {}
    for field, items in piece.items():
        if isinstance(items, list):
            so_far = merged.get(field)
            if so_far:
                so_far.extend(items)
            else:
                merged[field] = list(items)
    return merged


def synthesise(completion: dict[str, Any], *, include_usage: bool) -> bytes:
    """A chunk sequence that the OpenAI SDKs assemble back into `completion`, ending in `[DONE]`."""
    base: dict[str, Any] = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    for field in ("system_fingerprint", "service_tier"):
        if completion.get(field) is not None:
            base[field] = completion[field]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> tuple[None, dict]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return None, {**base, "choices": [choice]}

    events: list[tuple[str | None, Any]] = []
    for choice in completion.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        # A tool-call-only message has content null; keep it null so SDKs assemble the same message.
        opening = "" if isinstance(message.get("content"), str) else None
        events.append(chunk(index, {"role": message.get("role") or "assistant", "content": opening}))
        for field, value in message.items():
            if field not in ("role", "tool_calls") and isinstance(value, str) and value:
                events.append(chunk(index, {field: value}))
        for position, call in enumerate(message.get("tool_calls") or ()):
            events.append(chunk(index, {"tool_calls": [{"index": position, **call}]}))
        events.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    if include_usage and completion.get("usage"):
        events.append((None, {**base, "choices": [], "usage": completion["usage"]}))
    events.append((None, DONE))
    return sse.encode(events)
