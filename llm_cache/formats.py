"""Per-family knowledge of response bodies: what a complete success looks like (JSON or stream), how
to turn a recorded stream into the JSON the provider would have sent and back, how streams are
framed in storage and on the wire, and where usage is."""

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from llm_cache import anthropic_messages, gemini, ollama, openai_chat, openai_completions, openai_responses
from llm_cache.endpoints import Family, Wire


class Usage(NamedTuple):
    input_tokens: int | None
    output_tokens: int | None


class _Spec(NamedTuple):
    json_problem: Callable[[dict[str, Any]], str | None]  # why a parsed JSON success is not complete
    stream_problem: Callable[[bytes], str | None] | None  # None: the family never streams
    stream_to_json: Callable[[bytes], dict[str, Any]] | None
    json_to_stream: Callable[[dict[str, Any], bool], bytes] | None
    stream_wire: Wire = Wire.SSE  # how its streams are stored


def _needs(*fields: str) -> Callable[[dict[str, Any]], str | None]:
    """A JSON success carries one of these top-level fields and no error."""

    def problem(answer: dict[str, Any]) -> str | None:
        if not any(field in answer for field in fields):
            return f"response has no {fields[0]!r}"
        if answer.get("error"):
            return "response carries an error"
        return None

    return problem


_has_output = _needs("output")


def _responses_problem(answer: dict[str, Any]) -> str | None:
    return _has_output(answer) or openai_responses.json_problem(answer)


_SPECS: dict[Family, _Spec] = {
    Family.OPENAI_CHAT: _Spec(
        _needs("choices"),
        openai_chat.stream_problem,
        openai_chat.assemble,
        lambda body, include_usage: openai_chat.synthesise(body, include_usage=include_usage),
    ),
    Family.OPENAI_COMPLETIONS: _Spec(
        _needs("choices"),
        openai_chat.stream_problem,
        openai_completions.assemble,
        lambda body, include_usage: openai_completions.synthesise(body, include_usage=include_usage),
    ),
    Family.OPENAI_RESPONSES: _Spec(
        _responses_problem,
        openai_responses.stream_problem,
        openai_responses.assemble,
        lambda body, _include_usage: openai_responses.synthesise(body),
    ),
    Family.OPENAI_EMBEDDINGS: _Spec(_needs("data"), None, None, None),
    Family.ANTHROPIC_MESSAGES: _Spec(
        _needs("content"),
        anthropic_messages.stream_problem,
        anthropic_messages.assemble,
        lambda body, _include_usage: anthropic_messages.synthesise(body),
    ),
    Family.GEMINI_GENERATE: _Spec(
        gemini.json_problem,
        gemini.stream_problem,
        gemini.assemble,
        lambda body, _include_usage: gemini.synthesise(body),
    ),
    Family.GEMINI_EMBED: _Spec(_needs("embedding", "embeddings"), None, None, None),
    Family.OLLAMA_CHAT: _Spec(
        lambda answer: ollama.json_problem(answer, "message"),
        ollama.stream_problem, ollama.assemble, lambda body, _include_usage: ollama.synthesise(body), Wire.NDJSON,
    ),
    Family.OLLAMA_GENERATE: _Spec(
        lambda answer: ollama.json_problem(answer, "response"),
        ollama.stream_problem, ollama.assemble, lambda body, _include_usage: ollama.synthesise(body), Wire.NDJSON,
    ),
    Family.OLLAMA_EMBED: _Spec(_needs("embeddings", "embedding"), None, None, None),
    Family.BEDROCK: _Spec(lambda _answer: "Bedrock calls are not cached", None, None, None),
}


def json_problem(family: Family, body: bytes) -> str | None:
    """Why a JSON response body must not be stored, or None when it is a complete success."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "response is not JSON"
    if not isinstance(parsed, dict):
        return "response is not a JSON object"
    return _SPECS[family].json_problem(parsed)


def stream_problem(family: Family, body: bytes) -> str | None:
    """Why a stored-form stream must not be stored, or None when it reached its terminal event."""
    check = _SPECS[family].stream_problem
    if check is None:
        return f"{family} does not stream"
    return check(body)


def stored_wire(family: Family) -> Wire:
    """How this family's recorded streams are framed in storage."""
    return _SPECS[family].stream_wire


def stored_stream(family: Family, wire: Wire, body: bytes) -> bytes:
    """A recorded stream in the framing it is stored in (Gemini's JSON array becomes SSE);
    raises ValueError when it does not parse as that framing."""
    if wire is Wire.JSON_ARRAY and family is Family.GEMINI_GENERATE:
        return gemini.array_to_sse(body)
    return body


def stream_as(family: Family, wire: Wire, stored: bytes) -> bytes:
    """A stored stream in the framing a request asked for."""
    if wire is Wire.JSON_ARRAY and family is Family.GEMINI_GENERATE:
        return gemini.sse_to_array(stored)
    return stored


def stream_to_json(family: Family, body: bytes) -> bytes:
    """The JSON body for a non-streaming request, assembled from a recorded stream."""
    convert = _SPECS[family].stream_to_json
    if convert is None:
        raise ValueError(f"cannot assemble JSON from a {family} stream")
    return orjson.dumps(convert(body))


def json_to_stream(family: Family, body: bytes, *, include_usage: bool) -> bytes:
    """A stream (in the family's stored framing) for a streaming request, synthesised from a
    recorded JSON response."""
    convert = _SPECS[family].json_to_stream
    if convert is None:
        raise ValueError(f"cannot synthesise a {family} stream")
    return convert(orjson.loads(body), include_usage)


def assembled(family: Family, body: bytes) -> dict[str, Any] | None:
    """The JSON answer a recorded stream amounts to, or None when it cannot be assembled."""
    convert = _SPECS[family].stream_to_json
    if convert is None:
        return None
    try:
        parsed = convert(body)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    return parsed if isinstance(parsed, dict) else None


def usage_of(family: Family, body: bytes, *, is_stream: bool) -> Usage:
    """Token counts of a stored response, when the provider reported them."""
    try:
        if is_stream:
            if _SPECS[family].stream_to_json is None:
                return Usage(None, None)
            parsed: Any = _SPECS[family].stream_to_json(body)  # type: ignore[misc]
        else:
            parsed = orjson.loads(body)
    # The exceptions answers.replay allows for: a stream can pass stream_problem yet be malformed (an
    # Anthropic delta that is a string); its entry is still stored, without usage.
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return Usage(None, None)
    return usage_in(parsed)


def usage_in(parsed: Any) -> Usage:
    """Token counts in a JSON answer (or an assembled stream), when the provider reported them."""
    if not isinstance(parsed, dict):
        return Usage(None, None)
    if isinstance(parsed.get("response"), dict):  # Gemini CLI's envelope
        parsed = parsed["response"]
    if isinstance(parsed.get("usageMetadata"), dict):  # Gemini
        usage = parsed["usageMetadata"]
        return Usage(usage.get("promptTokenCount"), usage.get("candidatesTokenCount"))
    if "eval_count" in parsed or "prompt_eval_count" in parsed:  # Ollama
        return Usage(parsed.get("prompt_eval_count"), parsed.get("eval_count"))
    usage = parsed.get("usage")
    if not isinstance(usage, dict):
        return Usage(None, None)
    return Usage(
        usage.get("prompt_tokens", usage.get("input_tokens")),
        usage.get("completion_tokens", usage.get("output_tokens")),
    )
