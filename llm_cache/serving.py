"""The request side, one step per hook: `recognise` (requestheaders) and `look_up` (request).

recognise: an LLM endpoint? -> its target, controls, agent profile and partition, before any
other addon may rewrite the URL. look_up: read and key the body -> plan -> find the entry
(a database across the network: on a thread, within a limit) -> answer a hit, fail a replay miss
loudly, serve stale-if-error, wait for an identical request in flight, or let the miss go upstream.
Anything that fails passes the flow through untouched (llm_cache.failures)."""

import time
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import http

from llm_cache import answers, keys, messages, replay_misses, semantic, single_flight, stale
from llm_cache.answering import Later, answer_from, respond
from llm_cache.controls import OWN_HEADERS, has_own_headers, read_controls
from llm_cache.decode import TooLarge
from llm_cache.endpoints import PASSED_THROUGH, Wire, is_websocket_upgrade, route_for
from llm_cache.flowstate import META, FlowState
from llm_cache.lookup import Found, find_entry
from llm_cache.messages import MARK_BYPASS, MARK_NOT_STORED
from llm_cache.plan import Plan, is_expired, plan_for
from llm_cache.runtime import Runtime
from llm_cache.status import Status


def recognise(rt: Runtime, flow: http.HTTPFlow) -> None:
    """requestheaders: keep what the cache needs of an LLM call; anything else is not touched."""
    request = flow.request
    method, path = request.method, request.path
    if method == "GET":
        upgrade = messages.header(request.headers, b"upgrade")
        if rt.settings.refuse_websocket and is_websocket_upgrade(method, path, upgrade):
            _refuse_websocket(rt, flow)
        return
    route = route_for(method, path, messages.header(request.headers, b"content-type"))
    if route is None:
        return
    fields = messages.text_fields(request.headers)
    query = request.query.items(multi=True) if "?" in path else ()
    try:
        target = keys.make_target(method, request.scheme, request.host, request.port, path, query, fields)
    except ValueError as e:  # a keyed header that is not UTF-8: not ours to judge
        rt.failures.passed_through("reading the request headers", e)
        return
    controls = read_controls(fields)
    if has_own_headers(name for name, _ in fields):  # the cache's business only: no provider sees them
        for name in OWN_HEADERS:
            request.headers.pop(name, None)
    if controls.reject and (store := rt.stores.get()) is not None:
        store.reject(controls.reject)  # deleted by the writer, off the loop
    if controls.semantic_reject and (store := rt.stores.get()) is not None:
        store.report_semantic(controls.semantic_reject)  # counted by the writer (llm_cache.semantic)
    named = {n.lower(): v for n, v in fields}
    state: FlowState = {
        "route": route, "target": target, "controls": controls,
        "profile": rt.settings.key_rules.profiles.recognise(route.family, named),
        "user_agent": named.get("user-agent", ""),
        "partition": rt.partition(controls.namespace, fields, query),
    }
    flow.metadata[META] = state
    if route.family in PASSED_THROUGH:
        _bypass(flow, state, PASSED_THROUGH[route.family])


def request(rt: Runtime, flow: http.HTTPFlow) -> Later:
    """request: look an LLM call up; then a request that goes upstream gets the real key, when
    llm_cache_upstream_keys has one for its host (llm_cache.upstream_keys)."""
    later = look_up(rt, flow)
    if not rt.settings.upstream_keys:
        return later
    if later is None:
        rt.upstream_keys.inject(flow, rt.settings.upstream_keys)
        return None
    return _then_key(rt, flow, later)


async def _then_key(rt: Runtime, flow: http.HTTPFlow, later: Coroutine[Any, Any, None]) -> None:
    await later
    rt.upstream_keys.inject(flow, rt.settings.upstream_keys)


def look_up(rt: Runtime, flow: http.HTTPFlow) -> Later:
    """request: key the body and decide; what must wait (a far lookup, a flight) is returned."""
    state: FlowState | None = flow.metadata.get(META)
    if state is None or "status" in state:  # not ours, or already decided from the headers
        return None
    store = rt.stores.get()
    facts = _read_body(rt, flow, state) if store is not None else None
    if store is None or facts is None:
        if "status" not in state:  # not an LLM call after all, or no cache now: passed through untouched
            del flow.metadata[META]
        return None
    settings, controls = rt.settings, state["controls"]
    plan = plan_for(settings, controls, facts, family=state["route"].family, host=state["target"].host)
    if plan.bypass:
        _bypass(flow, state, plan.bypass)
        return None
    key = keys.cache_key(state["target"], facts.digest, state["partition"])
    wire = state["route"].stream_wire if facts.stream else Wire.JSON
    state.update({"request_key": key, "model": facts.model, "stream": facts.stream, "wire": wire,
                  "include_usage": facts.include_usage, "skip_store": plan.skip_store, "secret": facts.secret,
                  "deps": store.depend(controls.deps) if controls.deps else ()})
    now = time.time()
    nth = rt.nth(key)

    def find() -> Found:
        if not plan.look_up:
            return Found(None, None, nth % settings.samples)
        read = store.find_json if wire is Wire.JSON else store.find
        found = find_entry(read, key, nth=nth, samples=settings.samples, can_record=plan.skip_store is None,
                           is_expired=lambda record: is_expired(record, now, settings, controls,
                                                                store.versions if record.deps else None))
        if found.fresh is not None and found.fresh.key in controls.reject:  # reported bad: asked again
            return found._replace(fresh=None)
        return found

    if store.remote:
        return _find_far(rt, flow, find, plan, now)
    try:
        found = find()
    except Exception as e:
        rt.failures.passed_through("the cache lookup", e)
        del flow.metadata[META]
        return None
    return _decide(rt, flow, found, plan, now)


def _read_body(rt: Runtime, flow: http.HTTPFlow, state: FlowState) -> keys.BodyFacts | None:
    """What the key is made of (llm_cache.keys), or None: a body over the limit (a BYPASS), one that
    does not decode, or not JSON of the expected shape (not ours to judge)."""
    limit = rt.settings.max_request_bytes
    try:
        raw = messages.content(flow.request, limit)
    except TooLarge:  # decoding stopped at the limit: a compression bomb is never inflated whole
        _bypass(flow, state, f"request over llm_cache_max_request_bytes ({limit} bytes)")
        return None
    except ValueError as e:  # an encoding that does not decode
        rt.failures.passed_through("reading the request body", e)
        return None
    try:
        facts = rt.memo.facts(state["route"], raw, state["profile"])
        if facts is not None and facts.has_controls:
            flow.request.content = keys.without_controls(raw)  # a provider must never see "cache": false
        return facts
    except Exception as e:  # undecodable, not JSON, nested past any sane depth
        rt.failures.passed_through("reading the request body", e)
        return None


async def _find_far(rt: Runtime, flow: http.HTTPFlow, find: Callable[[], Found], plan: Plan, now: float) -> None:
    """A database across the network is looked up on threads of its own, within
    llm_cache_lookup_timeout_ms: a frozen or unreachable server never holds the event loop, and a
    request whose lookup takes longer goes upstream uncached."""
    try:
        found = await rt.stores.far(find)
    except TimeoutError:
        rt.failures.passed_through("the cache lookup", f"no answer within {rt.settings.lookup_timeout_ms} ms")
        del flow.metadata[META]
        return
    except Exception as e:
        rt.failures.passed_through("the cache lookup", e)
        del flow.metadata[META]
        return
    more = _decide(rt, flow, found, plan, now)
    if more is not None:
        await more


def _decide(rt: Runtime, flow: http.HTTPFlow, found: Found, plan: Plan, now: float) -> Later:
    """Answer a hit, fail a replay miss loudly, or let a miss go upstream."""
    state: FlowState = flow.metadata[META]
    try:
        answer = None
        if found.fresh is not None:
            answer = answers.replay(found.fresh, state["route"].family, want=state["wire"],
                                    include_usage=state["include_usage"])
    except Exception as e:
        rt.failures.passed_through("the cache lookup", e)
        del flow.metadata[META]
        return None
    if found.fresh is not None and answer is not None:
        answer_from(rt, flow, Status.HIT, answer, found.fresh, now)
        store = rt.stores.store
        if store is not None:
            store.touch(found.fresh.key, now)
        return None
    state.update({"status": Status.MISS, "entry_key": found.key_of(state["request_key"]), "sample": found.sample})
    if semantic.applies(rt, state, plan, found):  # a similar stored turn may answer first (llm_cache.semantic)
        return semantic.after_miss(rt, flow, now, lambda: _miss(rt, flow, found, plan))
    return _miss(rt, flow, found, plan)


def _miss(rt: Runtime, flow: http.HTTPFlow, found: Found, plan: Plan) -> Later:
    """Fail a replay miss loudly, serve stale-if-error, or send the miss upstream."""
    if plan.replay_only:
        return _replay_miss(rt, flow)
    if found.stale is not None and rt.settings.stale_if_error:
        rt.stale[flow.id] = found.stale
        return stale.serve_stale_if_unreachable(rt, flow)
    return single_flight.lead_or_follow(rt, flow, plan)


def _bypass(flow: http.HTTPFlow, state: FlowState, reason: str) -> None:
    state.update({"status": Status.BYPASS, "reason": reason})
    messages.note(flow, MARK_BYPASS, f"BYPASS: {reason}")


def _replay_miss(rt: Runtime, flow: http.HTTPFlow) -> Later:
    """Fail loudly, naming the stored request that came closest (llm_cache.replay_misses)."""
    store = rt.stores.store
    if store is not None and not store.remote:
        state: FlowState = flow.metadata[META]
        family, host = state["route"].family, state["target"].host
        _fail_replay_miss(rt, flow, replay_misses.closest(rt, flow, lambda: store.recent_requests(family, host)))
        return None

    async def far() -> None:
        _fail_replay_miss(rt, flow, await replay_misses.closest_far(rt, flow))

    return far()


def _fail_replay_miss(rt: Runtime, flow: http.HTTPFlow, closest: str) -> None:
    state: FlowState = flow.metadata[META]
    answer, why = replay_misses.answer(rt.settings, state, closest)
    respond(rt, flow, answer, Status.REPLAY_MISS, key=state["request_key"], reason=why)
    state["status"] = Status.REPLAY_MISS  # answered here: nothing for the response hooks to record
    messages.note(flow, MARK_NOT_STORED, "MISS not in the cache, not sent upstream", key=state["request_key"],
                  detail=why)


def _refuse_websocket(rt: Runtime, flow: http.HTTPFlow) -> None:
    reason = "WebSocket upgrade refused (llm_cache_refuse_websocket); the client falls back to HTTP"
    respond(rt, flow, answers.refused_websocket(), Status.BYPASS, reason=reason)
    messages.note(flow, MARK_BYPASS, f"BYPASS: {reason}")


