"""A request that is not in the cache and may not go upstream (llm_cache_mode replay, or
Cache-Control: only-if-cached) fails loudly: the answer, in the provider's own error shape, names
the stored request that came closest and where it differs (vcrpy only names failing matchers)."""

from collections.abc import Callable

from mitmproxy import http

from llm_cache import answers, keys, messages, policy
from llm_cache.closest import describe, nearest
from llm_cache.flowstate import META, FlowState
from llm_cache.normalise import canonical_form
from llm_cache.records import unpack_request
from llm_cache.runtime import Runtime

Rows = list[tuple[str, float, bytes]]  # (key, created_at, packed request) of stored requests
COULD_NOT_COMPARE = "The stored requests could not be compared."


def closest(rt: Runtime, flow: http.HTTPFlow, rows: Callable[[], Rows]) -> str:
    """Which stored request came closest, and what differs, in a sentence or two."""
    state: FlowState = flow.metadata[META]
    try:
        rules, family = rt.settings.key_rules, state["route"].family
        body = canonical_form(keys.parse_json(messages.content(flow.request, rt.settings.max_request_bytes)), rules,
                              family=family, profile=state["profile"])
        candidates = ((key, created_at, unpack_request(packed, rules, family)["body"])
                      for key, created_at, packed in rows())
        return describe(nearest(body, candidates))
    except Exception as e:
        rt.failures.passed_through("finding the closest stored request", e)
        return COULD_NOT_COMPARE


async def closest_far(rt: Runtime, flow: http.HTTPFlow) -> str:
    """The same, its candidates read off the event loop within the lookup limit (a database across
    the network)."""
    state: FlowState = flow.metadata[META]
    try:
        store = rt.stores.require()
        rows = await rt.stores.far(store.recent_requests, state["route"].family, state["target"].host)
    except Exception as e:
        rt.failures.passed_through("finding the closest stored request", str(e) or "it took too long")
        return COULD_NOT_COMPARE
    return closest(rt, flow, lambda: rows)


def answer(settings: policy.Settings, state: FlowState, closest: str) -> tuple[answers.Answer, str]:
    """The error answer, and why the request was not sent upstream."""
    replaying = settings.mode is policy.Mode.REPLAY
    why = "llm_cache_mode is replay" if replaying else "Cache-Control: only-if-cached"
    message = (f"llm-cache: this request ({state['model']} at {state['target'].url}) is not in the cache and "
               f"{why}, so it was not sent upstream. {closest}")
    return answers.replay_miss(state["route"].family, message, only_if_cached=not replaying), why
