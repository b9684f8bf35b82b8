"""Anthropic /v1/messages streams: completeness, assembly of a `message` from events, and synthesis of
the `message_start` … `message_stop` sequence from a `message`."""

from typing import Any

import orjson

from llm_cache import sse

# Delta type -> (the block field it extends).
_DELTA_FIELDS = {
    "text_delta": ("text", "text"),
    "thinking_delta": ("thinking", "thinking"),
    "signature_delta": ("signature", "signature"),
    "citations_delta": ("citation", "citations"),
}


def stream_problem(body: bytes) -> str | None:
    """Why a recorded stream must not be stored, or None when it reached `message_stop` cleanly."""
    last_type: list[Any] = [None]

    def problem_of(data: Any) -> str | None:
        if isinstance(data, dict):
            last_type[0] = data.get("type")
        return "stream carries an error event" if last_type[0] == "error" else None

    problem, _ = sse.check((data for _, data in sse.json_events(body)), problem_of)
    if problem is not None:
        return problem
    if last_type[0] != "message_stop":
        return "stream ended before message_stop"
    return None


def assemble(body: bytes) -> dict[str, Any]:
    """The `message` object the API would have returned for the same non-streaming request."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, str] = {}
    pieces = sse.Pieces()
    for _, event in sse.json_events(body):
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message = dict(event["message"])
            message["usage"] = dict(message.get("usage") or {})
        elif kind == "content_block_start":
            blocks[event["index"]] = dict(event["content_block"])
        elif kind == "content_block_delta":
            _apply_delta(blocks[event["index"]], event["delta"], partial_json, event["index"], pieces)
        elif kind == "content_block_stop":
            index = event["index"]
            if index in partial_json:
                raw = pieces.take(partial_json, index)
                blocks[index]["input"] = orjson.loads(raw) if raw else {}
        elif kind == "message_delta":
            message.update({k: v for k, v in (event.get("delta") or {}).items()})
            message.setdefault("usage", {}).update(event.get("usage") or {})
    pieces.finish()
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def _apply_delta(block: dict[str, Any], delta: dict[str, Any], partial_json: dict[int, str], index: int,
                 pieces: sse.Pieces) -> None:
    kind = delta.get("type")
    if kind == "input_json_delta":
        pieces.add(partial_json, index, delta.get("partial_json", ""))
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))
    elif kind in _DELTA_FIELDS:
        source, target = _DELTA_FIELDS[kind]
        pieces.add(block, target, delta.get(source, ""), none_is_empty=True)


def synthesise(message: dict[str, Any]) -> bytes:
    """Events that the Anthropic SDKs accumulate back into `message`."""
    usage = dict(message.get("usage") or {})
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(usage.get("output_tokens", 0), 1)},
    }
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message.get("content") or ()):
        events += _block_events(index, block)
    events.append(
        ("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        })
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return sse.encode(events)


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str | None, Any]]:
    kind = block.get("type")
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start = {**block, "text": ""}
        start.pop("citations", None)
        deltas = [{"type": "text_delta", "text": block.get("text", "")}]
        deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": orjson.dumps(block.get("input", {})).decode()}]
    elif kind == "thinking":
        start = {**block, "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:  # redacted_thinking, tool results, …: sent whole in the start event
        start = block
    events: list[tuple[str | None, Any]] = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events
