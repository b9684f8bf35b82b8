"""The semantic tier on the request path (llm_cache_semantic; off by default).

After an exact miss with nothing stored under the request's key: take the last user turn
(llm_cache.turns) and key everything else (the context); embed the turn on a thread; compare it with
the turns stored in the same context by the same embedder (the newest SIMILAR_AT_MOST); the closest
that reaches the threshold and passes the guard answers, in the wire format
the client asked for, as `X-LLM-Cache: HIT-SEMANTIC` with its similarity and key (llm_cache.guards). Otherwise the
request goes on as the exact miss it is, carrying its embedding so its answer is found next time;
with the synthesis tier on, near neighbours may first be given to a model (llm_cache.synthesis).

What an exact hit or miss does never changes: this runs only where the exact tier found nothing,
and any failure here (an embedder down, a database error) leaves the request an ordinary miss.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from mitmproxy import http

from cache_models import CacheStore
from llm_cache import answers, embedders, guards, keys, messages, similarity, synthesis, through_proxy, turns
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
    """Only where the exact tier found nothing, not even an expired entry; not in a replay (a replay
    is exact, or fails loudly); not when the request asks for the exact tier alone; and a turn that
    carries a credential is never sent to an embeddings endpoint (another provider, perhaps)."""
    semantic = rt.settings.semantic
    return (semantic is not None and not state["controls"].exact_only and plan.look_up and not plan.replay_only
            and found.fresh is None and found.stale is None and rt.settings.samples == 1
            and not (state.get("secret") and semantic.embedder != embedders.LOCAL))


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
    allowed: bool  # close enough, and the guard lets it answer


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
    digest = keys.body_digest(turn.context, rt.settings.key_rules, family=family, profile=state["profile"])
    context = keys.cache_key(state["target"], digest, state["partition"])
    embedder = rt.embedder()
    vector = await through_proxy.call(embedder.embed, turn.text)  # an endpoint's round trip, or ~0.2 ms
    state["semantic"] = Embedded(context, embedder.name, turn.text, similarity.to_bytes(vector))
    if state["controls"].semantic_reject:  # the semantic answer it got was wrong (counted): asked upstream
        return False
    # Ranking a context's vectors (in memory, read from the database every few seconds) and
    # comparing the closest in words: up to milliseconds for a long turn, so never on the event loop.
    rejected = state["controls"].reject  # reported bad by this very request: deleted, maybe not yet
    top = max(CANDIDATES, rt.settings.synthesis.top_k if rt.settings.synthesis else 0)
    candidates = [candidate for candidate in await rt.stores.off_loop(
        _candidates, store, settings, context, embedder.name, vector, turn.text, top) if candidate.key not in rejected]
    for candidate in candidates:
        if not candidate.allowed:
            continue
        record = await read_fresh(rt, state, candidate.key, now)
        if record is None:
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
        neighbours = [(c.key, c.turn, c.similarity) for c in candidates]
        return await synthesis.answer(rt, flow, turn.text, neighbours, now, read_fresh)
    except Exception as e:  # the model down, or an answer not of the expected shape
        rt.failures.passed_through("the synthesis tier", e, "the request goes on as an exact-tier miss")
        return False


def _candidates(store: CacheStore, settings: Semantic, context: str, embedder: str, vector: np.ndarray,
                text: str, top: int) -> list[Candidate]:
    """The `top` stored turns of this context closest to `vector`, closest first, each guarded (on a thread)."""
    stored = store.similar(context, embedder, settings.block_after)
    ranked = similarity.ranked(vector, stored.matrix, top)
    said = store.turns([stored.keys[index] for index, _ in ranked]) if ranked else {}
    found = []
    for index, score in ranked:
        key = stored.keys[index]
        turn = said.get(key, "")
        allowed = score >= settings.threshold and guards.guard_allows(settings.guard, text, turn)
        found.append(Candidate(key, turn, score, allowed))
    return found


async def read_fresh(rt: Runtime, state: FlowState, key: str, now: float) -> Record | None:
    """The entry under `key`, in the form the request's wire wants, unless it is gone or expired
    for this request (TTLs, max-age, dependency versions) as an exact hit would be."""
    store = rt.stores.store
    if store is None:
        return None
    read = store.find_json if state["wire"] is Wire.JSON else store.find
    record = await rt.stores.off_loop(read, key) if store.remote else read(key)
    if record is None:
        return None
    versions = store.versions if record.deps else None
    return None if is_expired(record, now, rt.settings, state["controls"], versions) else record
