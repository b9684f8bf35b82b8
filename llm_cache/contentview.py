"""The "LLM" content view (mitmweb, mitmproxy's console, mitmdump's flow detail): an LLM call as
people read it. The request: its family, model, system prompt, tools and each turn with its role,
tool calls and tool results. The answer: what the cache did with it, a stream assembled into the
answer it amounts to, its model, finish reason, usage and turns. The text is llm_cache.readable's,
as `scripts/llm-cache show` prints an entry.

It is the default view of every call the cache recognises (a route and a body of its shape) and
claims nothing else. It never raises: a body it cannot read is shown raw under a one-line note."""

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from mitmproxy import contentviews, http

from llm_cache import formats, ollama, readable, sse
from llm_cache.answers import is_stream_type
from llm_cache.endpoints import Family, Route, Wire, has_expected_shape, model_of, route_for, streams
from llm_cache.flowstate import META

logger = logging.getLogger(__name__)

PRIORITY = 2.0  # built-in views rate what they can show between 0 and 1: this one wins on LLM calls
_EMBEDDINGS = frozenset({Family.OPENAI_EMBEDDINGS, Family.GEMINI_EMBED, Family.OLLAMA_EMBED})
# Answers the view reads (JSON and its streams) or shows raw with the cache's outcome (text); any
# other type at an LLM endpoint (Bedrock's binary event stream, an image) is left to mitmproxy's views.
_READ_TYPES = ("json", "event-stream", "ndjson", "jsonl", "text/")


class Call(NamedTuple):
    """An LLM call the cache recognises: its route, its parsed request body, the cache's record of it."""

    route: Route
    request: dict[str, Any]
    state: Mapping[str, Any]


class LLMContentview(contentviews.Contentview):
    @property
    def name(self) -> str:
        return "LLM"

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        try:
            call = call_of(metadata)
            if not isinstance(call, Call):
                return 0
            message = metadata.http_message
            kind = (metadata.content_type or "").lower()
            if isinstance(message, http.Response) and kind and not any(t in kind for t in _READ_TYPES):
                return 0
            return PRIORITY
        except Exception:  # a view's priority must never break the choice of another view
            logger.debug("llm-cache: the LLM view could not judge a message", exc_info=True)
            return 0

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        try:
            call = call_of(metadata)
            if not isinstance(call, Call):
                return fallback(call, data)
            message = metadata.http_message
            if isinstance(message, http.Response):
                return response_text(call, message.status_code, metadata.content_type or "", data)
            return request_text(call)
        # Never raise: mitmproxy would show the raw bytes without a word of why, or a traceback when
        # the view was chosen by hand.
        except Exception as e:
            logger.debug("llm-cache: the LLM view could not read a message", exc_info=True)
            return fallback(f"the LLM view could not read this body: {type(e).__name__}: {e}", data)


def call_of(metadata: contentviews.Metadata) -> Call | str:
    """The LLM call a message belongs to, or why it is not one."""
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow) or metadata.http_message is None or flow.websocket is not None:
        return "not an HTTP message"
    state = flow.metadata.get(META)
    state = state if isinstance(state, Mapping) else {}
    request = flow.request
    # The route the cache saw at requestheaders, before other addons may have rewritten the request.
    route = state.get("route")
    if not isinstance(route, Route):
        route = route_for(request.method, request.path, request.headers.get("content-type", ""))
    if route is None:
        return f"not an LLM call llm-cache recognises: {request.method} {request.path}"
    try:
        body = orjson.loads(request.get_content(strict=False) or b"")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not has_expected_shape(route, body):
        return f"the request body is not JSON of a {route.family} call"
    return Call(route, body, state)


def request_text(call: Call) -> str:
    route, body = call.route, call.request
    head = f"{route.family} · model {model_of(route, body) or '?'}" + (" · stream" if streams(route, body) else "")
    return "\n".join([head, "", *readable.request_lines(body)])


def response_text(call: Call, status_code: int, content_type: str, data: bytes) -> str:
    lines = cache_lines(call.state)
    if not data:
        if not (is_stream_type(content_type) or call.state.get("stream")):
            return "\n".join([*lines, "(empty body)"])
        # mitmproxy keeps no streamed body: the cache gives the flow its copy of a stream it recorded.
        return "\n".join([*lines, "(no body: mitmproxy keeps no streamed body, and llm-cache gives the flow "
                                   "only the plain-text streams it records; or the stream is still running)"])
    family = call.route.family
    answer, how = read_answer(call.route, content_type, data)
    if answer is None:
        return "\n".join([*lines, fallback(how, data)])
    model = _model(answer) or str(call.state.get("model") or model_of(call.route, call.request) or "?")
    head = [f"{family} · model {model} · {how}"]
    if not 200 <= status_code < 300:
        head.append(f"HTTP {status_code}")
    if finish := _finish(answer):
        head.append(f"finish: {finish}")
    usage = formats.usage_in(answer)
    if usage != (None, None):
        head.append(f"usage: {_count(usage.input_tokens)} input · {_count(usage.output_tokens)} output tokens")
    body = readable.embedding_lines(answer) if family in _EMBEDDINGS and 200 <= status_code < 300 \
        else readable.answer_lines(answer)
    return "\n".join([*lines, *head, "", *body])


def read_answer(route: Route, content_type: str, data: bytes) -> tuple[dict[str, Any] | None, str]:
    """An answer body as JSON, and how it came (a stream is assembled); or None and why not."""
    family = route.family
    kind = content_type.split(";", 1)[0].strip().lower()
    parsed: Any = None
    if not is_stream_type(kind):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None  # a stream under another type, or not JSON at all: read as a stream below
    if isinstance(parsed, dict):
        return parsed, "JSON"
    if isinstance(parsed, list) and family is Family.GEMINI_GENERATE:  # streamGenerateContent without alt=sse
        stored = formats.stored_stream(family, Wire.JSON_ARRAY, data)
        framing = f"a JSON-array stream of {len(parsed)} chunks"
    elif parsed is not None:
        return None, f"the answer is JSON but not an object: {type(parsed).__name__}"
    else:
        stored, framing = data, _stream_framing(family, data)
        if not framing:
            return None, "the answer is neither a JSON object nor a stream of JSON events"
    answer = formats.assembled(family, stored)
    if answer is None:
        return None, f"the answer is a stream, but not one of {family} this view can assemble"
    problem = formats.stream_problem(family, stored)
    return answer, f"assembled from {framing}" + (f" (incomplete: {problem})" if problem else "")


def _stream_framing(family: Family, data: bytes) -> str:
    """How a body is framed as a stream of JSON pieces in its family's framing ("an SSE stream of 7
    events"), or "" when it is not one: an assembler would make an empty answer of anything."""
    ndjson = formats.stored_wire(family) is Wire.NDJSON
    try:
        count = sum(1 for _ in ollama.lines(data)) if ndjson else \
            sum(1 for _ in sse.json_events(data, done_marker="[DONE]"))
    except ValueError:
        return ""
    if not count:
        return ""
    return f"an NDJSON stream of {count} lines" if ndjson else f"an SSE stream of {count} events"


def cache_lines(state: Mapping[str, Any]) -> list[str]:
    """What the cache did with a call, as flow.metadata["llm_cache"] has it."""
    status = state.get("status")
    if not status:
        return []
    outcome = " · ".join(str(part) for part in (status, state.get("store"), state.get("reason")) if part)
    lines = [f"llm-cache: {outcome}"]
    if key := state.get("request_key"):
        lines.append(f"key: {key}")
    if (entry := state.get("entry_key")) and entry != key:
        lines.append(f"entry: {entry} (sample {state.get('sample', '?')})")
    return [*lines, ""]


def fallback(note: str, data: bytes) -> str:
    return f"({note})\n\n" + data.decode("utf-8", "replace")


def _model(answer: dict[str, Any]) -> str | None:
    if isinstance(answer.get("response"), dict):  # the Gemini CLI's envelope
        answer = answer["response"]
    for name in ("model", "modelVersion"):  # Gemini names it modelVersion
        if isinstance(answer.get(name), str) and answer[name]:
            return str(answer[name])
    return None


def _finish(answer: dict[str, Any]) -> str:
    """Why the answer ended: each choice's or candidate's reason, Anthropic's stop_reason, Ollama's
    done_reason, a Responses answer's status."""
    if isinstance(answer.get("response"), dict):
        answer = answer["response"]
    for items, field in (("choices", "finish_reason"), ("candidates", "finishReason")):
        if isinstance(answer.get(items), list):
            reasons = (item.get(field) for item in answer[items] if isinstance(item, dict))
            return ", ".join(str(reason) for reason in reasons if reason)
    for field in ("stop_reason", "done_reason", "status"):
        if isinstance(answer.get(field), str):
            return str(answer[field])
    return ""


def _count(tokens: int | None) -> str:
    return "?" if tokens is None else str(tokens)
