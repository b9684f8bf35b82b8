"""The semantic tier on the request path (llm_cache_semantic; off by default).

After an exact miss with nothing stored under the request's key: take the last user turn
(llm_cache.turns) and key everything else (the context); embed the turn on a thread; compare it with
the turns stored in the same context by the same embedder (the newest SIMILAR_AT_MOST); the closest
that reaches the threshold and passes the guard (llm_cache.similarity) answers, in the wire format
the client asked for, as `X-LLM-Cache: HIT-SEMANTIC` with its similarity and key. Otherwise the
request goes on as the exact miss it is, carrying its embedding so its answer is found next time;
with the synthesis tier on, near neighbours may first be given to a model (llm_cache.synthesis).

What an exact hit or miss does never changes: this runs only where the exact tier found nothing,
and any failure here (an embedder down, a database error) leaves the request an ordinary miss.
"""

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from mitmproxy import http

from cache_models import CacheStore
from llm_cache import answers, keys, messages, similarity, synthesis, turns
from llm_cache.answering import Later, answer_from
from llm_cache.endpoints import Wire
from llm_cache.flowstate import META, FlowState
from llm_cache.lookup import Found
from llm_cache.plan import Plan, is_expired
from llm_cache.records import Embedded, Record
from llm_cache.runtime import Runtime
from llm_cache.status import Status
from llm_cache.tier_settings import Semantic

CANDIDATES = 5  # the closest stored turns tried against the guard


def applies(rt: Runtime, state: FlowState, plan: Plan, found: Found) -> bool:
    return (rt.settings.semantic is not None and not state["controls"].exact_only and plan.look_up
            and found.fresh is None and found.stale is None and rt.settings.samples == 1)


async def after_miss(rt: Runtime, flow: http.HTTPFlow, now: float, then: Callable[[], Later]) -> None:
    """Answer from a similar stored turn, or go on with `then` (the exact miss's path)."""
    try:
        answered = await _answer(rt, flow, now)
    except Exception as e:
        rt.failures.passed_through("the semantic lookup", e, "the request goes on as an exact-tier miss")
        answered = False
    if not answered:
        more = then()
        if more is not None:
            await more


class Candidate(NamedTuple):
    key: str
    turn: str  # its stored turn
    similarity: float
    allowed: bool  # the guard lets it answer


async def _answer(rt: Runtime, flow: http.HTTPFlow, now: float) -> bool:
    settings, store = rt.settings.semantic, rt.stores.store
    state: FlowState = flow.metadata[META]
    if settings is None or store is None:
        return False
    family = state["route"].family
    body = keys.parse_json(messages.content(flow.request, rt.settings.max_request_bytes))
    turn = turns.last_turn(family, body, tool_results=settings.tool_results)
    if turn is None:
        return False
    canonical = keys.canonical_body(turn.context, rt.settings.key_rules, family=family, profile=state["profile"])
    context = keys.cache_key(state["target"], hashlib.sha256(canonical).hexdigest(), state["partition"])
    embedder = rt.embedder()
    vector = await asyncio.to_thread(embedder.embed, turn.text)  # an endpoint's round trip, or ~0.2 ms
    state["semantic"] = Embedded(context, embedder.name, turn.text, similarity.to_bytes(vector))
    if state["controls"].semantic_reject:  # the semantic answer it got was wrong: counted, and asked upstream
        store.report_semantic(state["controls"].semantic_reject)
        return False
    # Ranking a context's vectors (in memory, read from the database every few seconds) and
    # comparing the closest in words: up to milliseconds for a long turn, so never on the event loop.
    candidates = await _off_loop(rt, _candidates, store, settings, context, embedder.name, vector, turn.text)
    for candidate in candidates:
        if candidate.similarity < settings.threshold:
            break
        if not candidate.allowed:
            continue
        read = store.find_json if state["wire"] is Wire.JSON else store.find
        record = await _off_loop(rt, read, candidate.key) if store.remote else read(candidate.key)
        if record is None or _expired(rt, state, record, now):
            continue
        answer = answers.replay(record, family, want=state["wire"], include_usage=state["include_usage"])
        if answer is None:
            continue
        answer_from(rt, flow, Status.HIT_SEMANTIC, answer, record, now, similarity=candidate.similarity)
        store.touch(candidate.key, now)
        return True
    if rt.settings.synthesis is None:
        return False
    try:
        return await synthesis.answer(rt, flow, turn.text, [(c.key, c.turn, c.similarity) for c in candidates], now)
    except Exception as e:  # the model down, or an answer not of the expected shape
        rt.failures.passed_through("the synthesis tier", e, "the request goes on as an exact-tier miss")
        return False


def _candidates(store: CacheStore, settings: Semantic, context: str, embedder: str, vector: np.ndarray,
                text: str) -> list[Candidate]:
    """The stored turns of this context closest to `vector`, closest first, each guarded (on a thread)."""
    stored = store.similar(context, embedder, settings.block_after)
    ranked = similarity.ranked(vector, stored.matrix, CANDIDATES)
    said = store.turns([stored.keys[index] for index, _ in ranked]) if ranked else {}
    found = []
    for index, score in ranked:
        key = stored.keys[index]
        turn = said.get(key, "")
        allowed = score >= settings.threshold and similarity.guard_allows(settings.guard, text, turn)
        found.append(Candidate(key, turn, score, allowed))
    return found


async def _off_loop(rt: Runtime, work: Callable[..., Any], *args: Any) -> Any:
    """On a thread: for a database across the network, one of the lookups' own, within the lookup
    timeout; for SQLite, the loop's default executor (a thread has its own connection)."""
    store = rt.stores.store
    if store is not None and store.remote:
        return await rt.stores.far(work, *args)
    return await asyncio.to_thread(work, *args)


def _expired(rt: Runtime, state: FlowState, record: Record, now: float) -> bool:
    store = rt.stores.store
    versions = store.versions if record.deps and store is not None else None
    return is_expired(record, now, rt.settings, state["controls"], versions)
