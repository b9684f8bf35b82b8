"""The synthesis tier (llm_cache_synthesis; off by default, needs the semantic tier).

A request no stored turn answers, whose closest stored turns (same context, same embedder) reach
llm_cache_synthesis_threshold, is answered by a configured model given those question/answer pairs
(the top llm_cache_synthesis_top_k): `X-LLM-Cache: SYNTHESISED`, in the wire format and protocol the
client asked for. The answer is never stored as an entry (the request's own answer is still
recorded the next time it goes upstream), and its cost is its own: the model's call goes through
this proxy, where it is counted as a call of that model and its usage is reported in
`X-LLM-Cache-Synthesis-Usage`. Any failure leaves the request the ordinary miss it was.
"""

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from mitmproxy import http

from llm_cache import answers, messages, readable, through_proxy
from llm_cache.answering import respond
from llm_cache.endpoints import Family
from llm_cache.flowstate import META, FlowState
from llm_cache.messages import MARK_HIT
from llm_cache.records import Record
from llm_cache.runtime import Runtime
from llm_cache.status import Status

INSTRUCTIONS = (
    "You answer a question using only the answers given to similar earlier questions. Reply with the "
    "answer alone, as the earlier answers do, without mentioning them. If they do not contain the answer, "
    "reply with exactly: NO ANSWER"
)
NO_ANSWER = "NO ANSWER"


Read = Callable[[Runtime, FlowState, str, float], Awaitable[Record | None]]


async def answer(rt: Runtime, flow: http.HTTPFlow, question: str, neighbours: list[tuple[str, str, float]],
                 now: float, read: Read) -> bool:
    """`neighbours`: (entry key, stored turn, similarity), closest first; `read`: an entry unless it
    is gone or expired for this request (llm_cache.semantic.read_fresh). True when answered."""
    settings, store = rt.settings.synthesis, rt.stores.store
    state: FlowState = flow.metadata[META]
    if settings is None or store is None:
        return False
    pairs = []
    for key, text, score in neighbours[:settings.top_k]:
        if score < settings.threshold:
            break
        record = await read(rt, state, key, now)
        if record is not None and (said := answer_text(record)):
            pairs.append((text, said))
    if not pairs:
        return False
    prompt = "\n\n".join(f"Earlier question {n}:\n{q}\n\nIts answer:\n{a}" for n, (q, a) in enumerate(pairs, 1))
    request = {"model": settings.model, "temperature": 0, "messages": [
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": f"{prompt}\n\nQuestion:\n{question}"}]}
    reply = await through_proxy.call(through_proxy.post_json, settings.url, request, rt.proxy, rt.ca_file)
    text = reply["choices"][0]["message"]["content"]
    if not isinstance(text, str) or not text.strip() or text.strip() == NO_ANSWER:
        return False
    family = state["route"].family
    body = orjson.dumps(reply_body(family, state["model"], text, now))
    made = Record(key="", status=200, headers=[("content-type", "application/json")], body=body, is_stream=False,
                  created_at=now, family=family.value)
    replayed = answers.replay(made, family, want=state["wire"], include_usage=state["include_usage"])
    if replayed is None:
        return False
    usage = reply.get("usage") or {}
    cost = f"{settings.model} input={usage.get('prompt_tokens', 0)} output={usage.get('completion_tokens', 0)}"
    replayed = replayed._replace(headers=[*replayed.headers, ("X-LLM-Cache-Synthesis-Usage", cost)])
    why = f"by {settings.model} from {len(pairs)} stored answers"
    respond(rt, flow, replayed, Status.SYNTHESISED, reason=why)
    state["status"] = Status.SYNTHESISED
    messages.note(flow, MARK_HIT, Status.SYNTHESISED.value, detail=why)
    return True


def answer_text(record: Record) -> str:
    """The text of a stored answer (a stream's assembled one), as people read it."""
    try:
        lines = readable.answer_lines(orjson.loads(record.assembled or record.body))
    except orjson.JSONDecodeError:
        return ""
    return "\n".join(line for line in lines if line.strip())


def reply_body(family: Family, model: str, text: str, now: float) -> dict[str, Any]:
    """A complete JSON answer of `family` that says `text` (the stream, when one was asked for, is
    made from it as for any stored JSON answer)."""
    ident, created = uuid.uuid4().hex[:24], int(now)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    if family is Family.OPENAI_CHAT:
        return {"id": f"chatcmpl-{ident}", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    if family is Family.OPENAI_COMPLETIONS:
        return {"id": f"cmpl-{ident}", "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]}
    if family is Family.OPENAI_RESPONSES:
        return {"id": f"resp_{ident}", "object": "response", "created_at": created, "status": "completed",
                "model": model, "output": [{"type": "message", "id": f"msg_{ident}", "status": "completed",
                                            "role": "assistant",
                                            "content": [{"type": "output_text", "text": text, "annotations": []}]}]}
    if family is Family.ANTHROPIC_MESSAGES:
        return {"id": f"msg_{ident}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}
    if family is Family.GEMINI_GENERATE:
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                                "index": 0}], "modelVersion": model}
    if family is Family.OLLAMA_CHAT:
        return {"model": model, "created_at": when, "message": {"role": "assistant", "content": text},
                "done": True, "done_reason": "stop"}
    if family is Family.OLLAMA_GENERATE:
        return {"model": model, "created_at": when, "response": text, "done": True, "done_reason": "stop"}
    raise ValueError(f"no synthesised answer for {family}")

