"""Gemini generateContent / streamGenerateContent (Google AI, Vertex, and the Gemini CLI's v1internal,
whose payloads are wrapped as {"response": …}): completeness, a response from chunks and back, and
the two stream framings (SSE with ?alt=sse, else one JSON array sent piece by piece).

Streams are stored as SSE; a JSON-array stream is converted on the way in and back on the way out,
so either framing can answer the other.
"""

from typing import Any

import orjson

from llm_cache import sse

_WRAPPER = "response"  # v1internal: {"response": {...}, "traceId": ...}


def _unwrap(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the generateContent response, the v1internal envelope around it or None)."""
    if "candidates" not in payload and isinstance(payload.get(_WRAPPER), dict):
        return payload[_WRAPPER], payload
    return payload, None


def json_problem(payload: dict[str, Any]) -> str | None:
    response, _ = _unwrap(payload)
    if response.get("error"):
        return "response carries an error"
    if not response.get("candidates"):
        return "response has no candidates"  # e.g. a blocked prompt (promptFeedback.blockReason)
    return None


def stream_problem(body: bytes) -> str | None:
    """A stored (SSE) stream is complete when every candidate it opened reached a finishReason."""
    finished: dict[int, bool] = {}
    problem, _ = sse.check((chunk for _, chunk in sse.json_events(body)), lambda chunk: _chunk_problem(chunk, finished))
    if problem is not None:
        return problem
    if not finished or not all(finished.values()):
        return "stream ended before finishReason"
    return None


def _chunk_problem(chunk: Any, finished: dict[int, bool]) -> str | None:
    """What is wrong with one chunk; notes in `finished` which candidates it finishes."""
    if not isinstance(chunk, dict):
        return "stream has an event that is not an object"
    response, _ = _unwrap(chunk)
    if response.get("error") or chunk.get("error"):
        return "stream carries an error"
    for candidate in response.get("candidates") or ():
        index = candidate.get("index", 0)
        finished[index] = finished.get(index, False) or bool(candidate.get("finishReason"))
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The generateContent response for the same request: parts joined per candidate, the last
    chunk's finishReason, usage and metadata."""
    result: dict[str, Any] = {}
    envelope: dict[str, Any] | None = None
    candidates: dict[int, dict[str, Any]] = {}
    pieces = sse.Pieces()
    for _, chunk in sse.json_events(body):
        response, wrapper = _unwrap(chunk)
        envelope = wrapper if wrapper is not None else envelope
        result.update({k: v for k, v in response.items() if k != "candidates"})
        for piece in response.get("candidates") or ():
            index = piece.get("index", 0)
            candidate = candidates.get(index)
            if candidate is None:
                candidate = candidates[index] = {"content": {"role": "model", "parts": []}}
            content = piece.get("content") or {}
            if content.get("role"):
                candidate["content"]["role"] = content["role"]
            for part in content.get("parts") or ():
                _add_part(candidate["content"]["parts"], part, pieces)
            candidate.update({k: v for k, v in piece.items() if k != "content"})
    pieces.finish()
    result["candidates"] = [candidates[i] for i in sorted(candidates)]
    if envelope is not None:
        return {**envelope, _WRAPPER: result}
    return result


_TEXT_PART = frozenset({"text", "thought", "thoughtSignature"})


def _is_text_part(part: dict[str, Any]) -> bool:
    return "text" in part and set(part) <= _TEXT_PART


def _add_part(parts: list[dict[str, Any]], part: dict[str, Any], pieces: sse.Pieces) -> None:
    """Text arrives in pieces: join a text part onto the previous one of the same kind (thought or not)."""
    last = parts[-1] if parts else None
    same_kind = last is not None and bool(last.get("thought")) == bool(part.get("thought"))
    if last is not None and same_kind and _is_text_part(part) and _is_text_part(last):
        pieces.add(last, "text", part["text"], in_place=True)
        if "thoughtSignature" in part:
            last["thoughtSignature"] = part["thoughtSignature"]
    else:
        parts.append(dict(part))


def synthesise(payload: dict[str, Any]) -> bytes:
    """One SSE chunk carrying the whole response: Gemini itself streams a short answer that way."""
    return sse.encode([(None, payload)])


def sse_to_array(body: bytes) -> bytes:
    """The JSON-array framing of a stored SSE stream."""
    return b"[" + b",\r\n".join(event.data.encode() for event in sse.iter_events(body)) + b"]"


def array_to_sse(body: bytes) -> bytes:
    """The SSE framing of a complete JSON-array stream; raises ValueError if it is not one."""
    chunks = orjson.loads(body)
    if not isinstance(chunks, list):
        raise ValueError("a Gemini stream without alt=sse is a JSON array")
    return sse.encode((None, chunk) for chunk in chunks)
