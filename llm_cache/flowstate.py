"""What the cache knows of one flow, from hook to hook: one typed record in
`flow.metadata["llm_cache"]`. A TypedDict, so it stays plain data (mitmproxy saves a flow's
metadata with it: dicts, tuples and strings save and load; an object would not)."""

from typing import TypedDict

from llm_cache.controls import Controls
from llm_cache.endpoints import Route, Wire
from llm_cache.keys import RequestTarget
from llm_cache.records import Embedded
from llm_cache.status import Status

META = "llm_cache"  # the one flow.metadata key the cache uses


class FlowState(TypedDict, total=False):
    # requestheaders: a recognised LLM call
    route: Route
    target: RequestTarget  # where it was going, read before other addons may rewrite it
    controls: Controls  # the request's own X-LLM-Cache-* and Cache-Control wishes
    profile: str  # the agent profile its body is keyed with ("" = none)
    user_agent: str
    partition: str  # the part of the cache it belongs to (namespace, credential HMAC)
    status: Status  # what the cache did; absent while undecided
    reason: str  # why it was a BYPASS or a replay miss
    # request: the body read and keyed
    request_key: str  # the key of the request
    entry_key: str  # the key of the entry that answers it: the request key, or its sample's
    sample: int
    model: str
    stream: bool  # the client asked for a stream
    wire: Wire  # the wire format its answer takes
    include_usage: bool
    skip_store: str | None  # why its answer must not be recorded, if it must not
    secret: str | None  # the kind of credential its body carries, if any
    deps: tuple[tuple[str, str], ...]  # the dependency versions its answer is recorded under
    semantic: Embedded  # its last turn's embedding (the semantic tier), recorded with its answer
    leads: bool  # the first of identical requests in flight: the others wait for its answer
    relayed_from: tuple[str, str, int, str]  # a follower's destination (scheme, host, port, path) before the relay
    # response: what became of a miss ("stored", "queued: …", "skipped: …")
    store: str
