"""OpenAI Responses streams (any host: api.openai.com, Azure's /openai/v1/responses, the Codex backend):
completeness, the response object from a stream, and the event sequence from a response object.

Events carry a `sequence_number`; the stream is complete at `response.completed`, which holds the
whole response. `response.failed`, `response.incomplete` and `error` are never stored.
"""

from collections.abc import Iterator
from typing import Any

from llm_cache import sse

_FAILED = ("error", "response.failed", "response.incomplete")


def stream_problem(body: bytes) -> str | None:
    """Why a recorded stream must not be stored, or None when it reached response.completed cleanly."""
    types: set[Any] = set()

    def problem_of(data: Any) -> str | None:
        kind = data.get("type") if isinstance(data, dict) else None
        types.add(kind)
        return f"stream carries {kind}" if kind in _FAILED else None

    problem, _ = sse.check((data for _, data in sse.json_events(body)), problem_of)
    if problem is not None:
        return problem
    if "response.completed" not in types:
        return "stream ended before response.completed"
    return None


def json_problem(response: dict[str, Any]) -> str | None:
    """A JSON response that did not complete (status failed, incomplete, …) is not stored."""
    status = response.get("status")
    if status not in (None, "completed"):
        return f"response status is {status}"
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The response object a JSON request gets: `response.completed` carries it whole."""
    for _, data in sse.json_events(body):
        if isinstance(data, dict) and data.get("type") == "response.completed":
            return dict(data["response"])
    raise ValueError("no response.completed event")


def synthesise(response: dict[str, Any]) -> bytes:
    """The event sequence the OpenAI SDKs (including `responses.stream()`'s strict accumulator)
    read back as `response`: created, in_progress, each output item with its deltas, completed."""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
    ]
    for index, item in enumerate(response.get("output") or ()):
        events += _item_events(index, item)
    events.append(("response.completed", {"response": response}))
    return sse.encode(
        (kind, {"type": kind, "sequence_number": number, **data}) for number, (kind, data) in enumerate(events)
    )


def _item_events(index: int, item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = item.get("type")
    at = {"item_id": item.get("id"), "output_index": index}
    if kind == "message":
        yield "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress",
                                                                           "content": []}}
        for part_index, part in enumerate(item.get("content") or ()):
            yield from _part_events({**at, "content_index": part_index}, part)
    elif kind == "function_call":
        yield "response.output_item.added", {"output_index": index, "item": {**item, "status": "in_progress",
                                                                           "arguments": ""}}
        arguments = item.get("arguments") or ""
        yield "response.function_call_arguments.delta", {**at, "delta": arguments}
        yield "response.function_call_arguments.done", {**at, "arguments": arguments, "name": item.get("name")}
    elif kind == "reasoning":
        yield "response.output_item.added", {"output_index": index, "item": {**item, "summary": []}}
        for summary_index, summary in enumerate(item.get("summary") or ()):
            where = {**at, "summary_index": summary_index}
            text = summary.get("text", "")
            yield "response.reasoning_summary_part.added", {**where, "part": {**summary, "text": ""}}
            yield "response.reasoning_summary_text.delta", {**where, "delta": text}
            yield "response.reasoning_summary_text.done", {**where, "text": text}
            yield "response.reasoning_summary_part.done", {**where, "part": summary}
    else:  # tool calls run by the provider (web search, …): announced and finished whole
        yield "response.output_item.added", {"output_index": index, "item": item}
    yield "response.output_item.done", {"output_index": index, "item": item}


def _part_events(at: dict[str, Any], part: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = part.get("type")
    if kind == "output_text":
        text = part.get("text", "")
        yield "response.content_part.added", {**at, "part": {**part, "text": "", "annotations": []}}
        yield "response.output_text.delta", {**at, "delta": text, "logprobs": []}
        for number, annotation in enumerate(part.get("annotations") or ()):
            yield "response.output_text.annotation.added", {**at, "annotation_index": number,
                                                            "annotation": annotation}
        yield "response.output_text.done", {**at, "text": text, "logprobs": part.get("logprobs") or []}
    elif kind == "refusal":
        refusal = part.get("refusal", "")
        yield "response.content_part.added", {**at, "part": {**part, "refusal": ""}}
        yield "response.refusal.delta", {**at, "delta": refusal}
        yield "response.refusal.done", {**at, "refusal": refusal}
    else:
        yield "response.content_part.added", {**at, "part": part}
    yield "response.content_part.done", {**at, "part": part}
