"""Single flight, the hook side: identical fresh requests in flight share one upstream call
(llm_cache.flights keeps the flights; llm_cache.relay relays a stream live)."""

import time

from mitmproxy import http

from llm_cache import answers
from llm_cache.answering import Later, answer_from
from llm_cache.flights import Flight, Relayed
from llm_cache.flowstate import META, FlowState
from llm_cache.plan import Plan
from llm_cache.records import Record
from llm_cache.runtime import Runtime
from llm_cache.status import Status


def lead_or_follow(rt: Runtime, flow: http.HTTPFlow, plan: Plan) -> Later:
    """The first of identical fresh requests goes upstream (it leads); those that come while it is
    in flight wait for its answer, up to llm_cache_single_flight_wait, and are answered from it. If
    it fails or is not recorded, each goes upstream itself."""
    state: FlowState = flow.metadata[META]
    settings = rt.settings
    if not plan.look_up or plan.skip_store is not None or settings.samples > 1 or not settings.single_flight_wait:
        return None  # only where an answer may come from the cache
    try:
        flight = rt.flights.lead(state["entry_key"], state["wire"])
    except RuntimeError:  # hooks called outside an event loop (tests): no one to share with
        return None
    if flight is None:
        state["leads"] = True
        return None
    return _follow(rt, flow, flight)


async def _follow(rt: Runtime, flow: http.HTTPFlow, flight: Flight) -> None:
    state: FlowState = flow.metadata[META]
    got = await rt.flights.follow(state["entry_key"], flight, state["wire"], rt.settings.single_flight_wait)
    if got is None:  # the first one failed, or was not recorded: this one goes upstream too
        return
    if isinstance(got, Relayed):  # the first one's stream, live, from the relay
        request = flow.request
        state.update({"status": Status.HIT, "relayed_from": (request.scheme, request.host, request.port, request.path)})
        request.scheme, request.host, request.port, request.path = "http", "127.0.0.1", got.port, f"/{got.name}"
        return
    answer = answers.replay(got, state["route"].family, want=state["wire"], include_usage=state["include_usage"])
    if answer is not None:
        answer_from(rt, flow, Status.HIT, answer, got, time.time(), shared=True)


def release(rt: Runtime, state: FlowState, record: Record | None) -> None:
    """The leader's answer is known (or it failed): the requests that waited for it go on."""
    if state.pop("leads", False):
        rt.flights.release(state["entry_key"], record)
