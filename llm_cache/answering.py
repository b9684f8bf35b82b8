"""Answering from the proxy: an answer with the headers that say what the cache did, marked for
mitmweb; a hit is a replay with today's Date. Shared by the hook steps."""

from collections.abc import Coroutine
from typing import Any

from mitmproxy import http

from llm_cache import answers, messages
from llm_cache.flowstate import META
from llm_cache.messages import MARK_HIT
from llm_cache.records import Record
from llm_cache.runtime import Runtime
from llm_cache.status import Status, status_headers

Later = Coroutine[Any, Any, None] | None  # a hook's rest, when it has to wait


def answer_from(rt: Runtime, flow: http.HTTPFlow, status: Status, answer: answers.Answer, record: Record,
                now: float, *, shared: bool = False, similarity: float | None = None) -> None:
    """Answer from the proxy, with the headers that say what the cache did: a replay, as mitmproxy's
    server replay marks one (mitmdump prints `[replay]`, `~replays` finds it), with today's Date
    unless llm_cache_refresh_date is off."""
    age = max(0, int(now - record.created_at))
    if rt.settings.refresh_date:
        answer = answer._replace(headers=messages.with_date(answer.headers, now))
    respond(rt, flow, answer, status, key=record.key, age=age, similarity=similarity)
    flow.is_replay = "response"
    flow.metadata[META]["status"] = status
    how = "the answer of an identical request in flight" if shared else f"age {age}s"
    if similarity is not None:
        how = f"similarity {similarity:.3f} · {how}"
    messages.note(flow, MARK_HIT, status.value, key=record.key, detail=how)


def respond(rt: Runtime, flow: http.HTTPFlow, answer: answers.Answer, status: Status, **details: Any) -> None:
    headers = answer.headers + status_headers(status, compat=rt.settings.compat_headers, **details)
    flow.response = messages.make_response(answer.status, answer.body, headers)
