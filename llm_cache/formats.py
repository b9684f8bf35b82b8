"""Per-family knowledge of response bodies: what a complete success looks like (JSON or stream), how
to turn a recorded stream into the JSON the provider would have sent and back, and where usage is."""

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from llm_cache import anthropic_messages, openai_chat, sse
from llm_cache.endpoints import Family


class Usage(NamedTuple):
    input_tokens: int | None
    output_tokens: int | None


class _Spec(NamedTuple):
    json_field: str  # a stored JSON success must carry this top-level field
    stream_problem: Callable[[bytes], str | None] | None
    stream_to_json: Callable[[bytes], dict[str, Any]] | None
    json_to_stream: Callable[[dict[str, Any], bool], bytes] | None


def _responses_stream_problem(body: bytes) -> str | None:
    try:
        types = [data.get("type") for _, data in sse.json_events(body) if isinstance(data, dict)]
    except ValueError:
        return "stream has an event that is not JSON"
    for bad in ("error", "response.failed", "response.incomplete"):
        if bad in types:
            return f"stream carries {bad}"
    if "response.completed" not in types:
        return "stream ended before response.completed"
    return None


def _responses_stream_to_json(body: bytes) -> dict[str, Any]:
    for _, data in sse.json_events(body):
        if isinstance(data, dict) and data.get("type") == "response.completed":
            return dict(data["response"])
    raise ValueError("no response.completed event")


_SPECS: dict[Family, _Spec] = {
    Family.OPENAI_CHAT: _Spec(
        "choices",
        openai_chat.stream_problem,
        openai_chat.assemble,
        lambda body, include_usage: openai_chat.synthesise(body, include_usage=include_usage),
    ),
    Family.ANTHROPIC_MESSAGES: _Spec(
        "content",
        anthropic_messages.stream_problem,
        anthropic_messages.assemble,
        lambda body, _include_usage: anthropic_messages.synthesise(body),
    ),
    Family.OPENAI_RESPONSES: _Spec("output", _responses_stream_problem, _responses_stream_to_json, None),
    Family.OPENAI_COMPLETIONS: _Spec("choices", openai_chat.stream_problem, None, None),
    Family.OPENAI_EMBEDDINGS: _Spec("data", None, None, None),
}


def json_problem(family: Family, body: bytes) -> str | None:
    """Why a JSON response body must not be stored, or None when it is a complete success."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "response is not JSON"
    if not isinstance(parsed, dict) or _SPECS[family].json_field not in parsed:
        return f"response has no {_SPECS[family].json_field!r}"
    if parsed.get("error"):
        return "response carries an error"
    return None


def stream_problem(family: Family, body: bytes) -> str | None:
    """Why a recorded stream must not be stored, or None when it reached its terminal event."""
    check = _SPECS[family].stream_problem
    if check is None:
        return f"{family} does not stream"
    return check(body)


def can_convert(family: Family, *, from_stream: bool) -> bool:
    spec = _SPECS[family]
    return (spec.stream_to_json if from_stream else spec.json_to_stream) is not None


def stream_to_json(family: Family, body: bytes) -> bytes:
    """The JSON body for a non-streaming request, assembled from a recorded stream."""
    convert = _SPECS[family].stream_to_json
    if convert is None:
        raise ValueError(f"cannot assemble JSON from a {family} stream")
    return orjson.dumps(convert(body))


def json_to_stream(family: Family, body: bytes, *, include_usage: bool) -> bytes:
    """An SSE body for a streaming request, synthesised from a recorded JSON response."""
    convert = _SPECS[family].json_to_stream
    if convert is None:
        raise ValueError(f"cannot synthesise a {family} stream")
    return convert(orjson.loads(body), include_usage)


def usage_of(family: Family, body: bytes, *, is_stream: bool) -> Usage:
    """Token counts of a stored response, when the provider reported them."""
    try:
        if is_stream:
            if _SPECS[family].stream_to_json is None:
                return Usage(None, None)
            parsed: Any = _SPECS[family].stream_to_json(body)  # type: ignore[misc]
        else:
            parsed = orjson.loads(body)
    except (ValueError, KeyError, TypeError):
        return Usage(None, None)
    usage = parsed.get("usage") if isinstance(parsed, dict) else None
    if not isinstance(usage, dict):
        return Usage(None, None)
    return Usage(
        usage.get("prompt_tokens", usage.get("input_tokens")),
        usage.get("completion_tokens", usage.get("output_tokens")),
    )
