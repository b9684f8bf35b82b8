"""Legacy /completions and FIM streams: `text_completion` chunks whose choices carry `text`. Some FIM
endpoints (Mistral's /fim/completions) answer in the chat shape instead; those are handed to
llm_cache.openai_chat. Completeness is the same rule as chat's (openai_chat.stream_problem)."""

from collections.abc import Iterable
from typing import Any

from llm_cache import openai_chat, sse

DONE = openai_chat.DONE


class _ChatShaped(Exception):
    pass


def assemble(body: bytes) -> dict[str, Any]:
    """The `text_completion` (or, for chat-shaped chunks, `chat.completion`) a JSON request gets."""
    # The usual text stream in one pass that keeps no chunk (a 50 MB stream's chunks take ~250 MB).
    # A chat-shaped chunk, or anything raising, sends the stream the way that decides between the
    # shapes exactly (every chunk parsed, then the check over them all): it also raises what it raises.
    try:
        return _text_completion(chunk for _, chunk in sse.json_events(body, done_marker=DONE)
                                if isinstance(chunk, dict))
    except Exception:
        pass
    chunks = [c for _, c in sse.json_events(body, done_marker=DONE) if isinstance(c, dict)]
    if any("delta" in choice for chunk in chunks for choice in chunk.get("choices") or ()):
        return openai_chat.assemble_chunks(chunks)
    return _text_completion(chunks)


def _text_completion(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The `text_completion`; raises _ChatShaped at a chat-shaped chunk."""
    result: dict[str, Any] = {"id": None, "object": "text_completion", "created": None, "model": None}
    choices: dict[int, dict[str, Any]] = {}
    pieces = sse.Pieces()
    for chunk in chunks:
        if any("delta" in choice for choice in chunk.get("choices") or ()):
            raise _ChatShaped
        openai_chat.merge_envelope(result, chunk, ("id", "created", "model", "system_fingerprint"))
        for piece in chunk.get("choices") or ():
            index = piece.get("index", 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = {"text": "", "index": index, "logprobs": None, "finish_reason": None}
            pieces.add(choice, "text", piece.get("text") or "", in_place=True)
            if piece.get("finish_reason") is not None:
                choice["finish_reason"] = piece["finish_reason"]
            if piece.get("logprobs"):
                choice["logprobs"] = openai_chat.merge_logprobs(choice["logprobs"], piece["logprobs"])
    pieces.finish()
    result["choices"] = [choices[i] for i in sorted(choices)]
    return result


def synthesise(completion: dict[str, Any], *, include_usage: bool) -> bytes:
    """Chunks the OpenAI SDK reads back as the same completion, ending in `[DONE]`."""
    choices = completion.get("choices") or ()
    if any("message" in choice for choice in choices):
        return openai_chat.synthesise(completion, include_usage=include_usage)
    base = {key: completion.get(key) for key in ("id", "created", "model")}
    base["object"] = "text_completion"
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    events: list[tuple[str | None, Any]] = []
    for choice in choices:
        index = choice.get("index", 0)
        events.append((None, {**base, "choices": [
            {"text": choice.get("text") or "", "index": index, "logprobs": choice.get("logprobs"),
             "finish_reason": None}]}))
        events.append((None, {**base, "choices": [
            {"text": "", "index": index, "logprobs": None, "finish_reason": choice.get("finish_reason") or "stop"}]}))
    if include_usage and completion.get("usage"):
        events.append((None, {**base, "choices": [], "usage": completion["usage"]}))
    events.append((None, DONE))
    return sse.encode(events)
