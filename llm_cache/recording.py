"""The response side, one step per hook: `responseheaders` (tee a stream without delaying it),
`response` (validate a complete success and hand it to the writer; the answer waits for the commit)
and `error` (a stream whose terminal event passed before the connection broke is stored all the
same). What became of a miss is in X-LLM-Cache-Store, or, for a stream whose headers left long
ago, in mitmweb's comment."""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future

from mitmproxy import http

from llm_cache import answers, messages
from llm_cache.answering import Later
from llm_cache.decode import TooLarge
from llm_cache.endpoints import Wire
from llm_cache.flowstate import META, FlowState
from llm_cache.messages import MARK_HIT, MARK_NOT_STORED, MARK_STORED
from llm_cache.records import Record
from llm_cache.runtime import Runtime
from llm_cache.single_flight import release
from llm_cache.stale import serve_stale
from llm_cache.status import Status, is_status_header, status_headers, store_headers
from llm_cache.tee import StreamTee

STALE_STATUSES = frozenset({429, 500, 502, 503, 504})  # upstream failures stale-if-error covers
STORE_WAIT = 2.0  # seconds an answer waits for its entry to be committed before it says "queued"

Outcome = str | Future[str]  # what became of a miss, or a future of it once the writer has committed it


def responseheaders(rt: Runtime, flow: http.HTTPFlow) -> None:
    """Say what the cache did, and tee a stream that may be recorded (or relayed to followers)."""
    rt.upstream_keys.put_back(flow)  # the request has left: the flow holds the client's key again
    state: FlowState | None = flow.metadata.get(META)
    response = flow.response
    if not state or response is None:
        return
    if "relayed_from" in state:
        _relayed(rt, flow, state, response)
        return
    status = state.get("status")
    if status not in (Status.MISS, Status.BYPASS):
        return
    messages.add_headers(response.headers, status_headers(
        status, key=state.get("entry_key"), reason=state.get("reason"), compat=rt.settings.compat_headers))
    success = 200 <= response.status_code < 300
    # A stream by its type, or (Gemini's JSON array) because the request asked for one.
    if not answers.is_stream_type(messages.header(response.headers, b"content-type")) and not (
            success and state.get("stream")):
        return
    if status is Status.MISS and success and not state.get("skip_store"):
        listener = None
        if state.get("leads"):  # identical requests waiting for this one get its stream live
            fields = [(n, v) for n, v in response.headers.fields if not is_status_header(n.decode("latin-1"))]
            listener = rt.flights.streaming(state["entry_key"], response.status_code, fields)
        encoding = messages.header(response.headers, b"content-encoding")
        response.stream = StreamTee(encoding, rt.settings.max_response_bytes, listener)
    else:
        response.stream = True  # not recorded: still forwarded piece by piece, as mitmproxy would not


def _relayed(rt: Runtime, flow: http.HTTPFlow, state: FlowState, response: http.Response) -> None:
    """A follower's answer from the relay: the request shows where it was going again, and the
    answer says what the cache did."""
    request = flow.request
    request.scheme, request.host, request.port, request.path = state["relayed_from"]
    messages.add_headers(response.headers, status_headers(Status.HIT, key=state["entry_key"], age=0,
                                                          compat=rt.settings.compat_headers))
    # Forwarded as it comes, and kept for mitmweb (mitmproxy keeps no streamed body).
    response.stream = StreamTee(messages.header(response.headers, b"content-encoding"), rt.settings.max_response_bytes)
    flow.is_replay = "response"
    messages.note(flow, MARK_HIT, "HIT", key=state["entry_key"],
                  detail="the live stream of an identical request in flight")


def response(rt: Runtime, flow: http.HTTPFlow) -> Later:
    """Record a miss's answer; a JSON answer then waits for the commit (returned)."""
    state: FlowState | None = flow.metadata.get(META)
    if state and "relayed_from" in state and flow.response is not None and isinstance(flow.response.stream,
                                                                                       StreamTee):
        _keep_body(flow.response, flow.response.stream)
        return None
    if not state or state.get("status") != Status.MISS or flow.response is None:
        return None
    stale = rt.stale.pop(flow.id, None)
    if stale is not None and flow.response.status_code in STALE_STATUSES and serve_stale(rt, flow, stale):
        release(rt, state, None)
        return None
    _count_miss(rt, state)
    outcome = _record(rt, flow, state)
    release(rt, state, None)  # a leader that recorded its answer has shared it already
    if isinstance(flow.response.stream, StreamTee):  # a streamed answer's headers are gone: mitmweb says it
        _recorded(flow, state, outcome if isinstance(outcome, str) else _later(rt, flow, state, outcome))
        _keep_body(flow.response, flow.response.stream)
        return None
    if isinstance(outcome, str):
        _answered(rt, flow, state, outcome)
        return None
    return _answer_when_stored(rt, flow, state, outcome)


def error(rt: Runtime, flow: http.HTTPFlow) -> None:
    """A stream can end in an error after its answer is complete: the Codex CLI resets its HTTP/2
    stream as soon as it has `response.completed`, before the upstream body ends. A stream whose
    terminal event passed is stored all the same; one that never reached it never is."""
    rt.stale.pop(flow.id, None)
    rt.upstream_keys.put_back(flow)
    state: FlowState | None = flow.metadata.get(META)
    if not state:
        return
    if state.get("status") == Status.MISS and "store" not in state:  # the response hook never ran
        _count_miss(rt, state)
    if (state.get("status") == Status.MISS and "store" not in state and flow.response is not None
            and isinstance(flow.response.stream, StreamTee)):
        outcome = _record(rt, flow, state, ended_early=True)
        _recorded(flow, state, outcome if isinstance(outcome, str) else _later(rt, flow, state, outcome))
        _keep_body(flow.response, flow.response.stream)
    release(rt, state, None)


def _count_miss(rt: Runtime, state: FlowState) -> None:
    """An LLM call that went upstream, for the hit rate (batched with the hit counts, written by the writer)."""
    store = rt.stores.store
    if store is not None:
        store.missed(state["route"].family.value, state["target"].host, state["model"], time.time())


def _keep_body(response: http.Response, tee: StreamTee) -> None:
    """mitmproxy keeps no streamed body (unless store_streamed_bodies is on): the flow gets the
    tee's copy, so mitmweb shows what was recorded and a saved flow keeps it. Only a body that was
    not encoded, as its headers still say."""
    if not response.data.content and tee.plain and tee.body:  # store_streamed_bodies may have kept it
        response.data.content = tee.whole()
    tee.release()


async def _answer_when_stored(rt: Runtime, flow: http.HTTPFlow, state: FlowState, stored: Future[str]) -> None:
    """`X-LLM-Cache-Store: stored` means written: the answer waits for the commit (a few ms), up to
    STORE_WAIT, then says what is known ("queued …") and mitmweb's comment the rest."""
    store = rt.stores.store
    if store is not None and store.retrying:  # the writer is stuck on a cause: no answer waits for it
        _answered(rt, flow, state, _later(rt, flow, state, stored))
        return
    try:
        outcome = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(stored)), STORE_WAIT)
    except TimeoutError:
        outcome = _later(rt, flow, state, stored)
    _answered(rt, flow, state, outcome)


def _answered(rt: Runtime, flow: http.HTTPFlow, state: FlowState, outcome: str) -> None:
    assert flow.response is not None
    messages.add_headers(flow.response.headers, store_headers(outcome, compat=rt.settings.compat_headers))
    _recorded(flow, state, outcome)


def _later(rt: Runtime, flow: http.HTTPFlow, state: FlowState, stored: Future[str]) -> str:
    """What to say of an entry not written yet; its comment is brought up to date when it is (the
    future is settled on a helper thread: the update runs on the event loop)."""
    def update(outcome: str) -> None:
        _recorded(flow, state, outcome)
        rt.updated(flow)

    loop = rt.loop
    if loop is not None:
        stored.add_done_callback(lambda done: loop.call_soon_threadsafe(update, done.result()))
    else:  # hooks called outside mitmproxy (tests): no event loop to hand the update to
        stored.add_done_callback(lambda done: _recorded(flow, state, done.result()))
    store = rt.stores.store
    why = store.retrying if store is not None and store.retrying else "the writer has not committed it yet"
    return f"queued: not written yet ({why})"


def _recorded(flow: http.HTTPFlow, state: FlowState, outcome: str) -> None:
    state["store"] = outcome
    near = flow.comment.partition("\nnear miss: ")[2]  # a near miss may have been noted first
    messages.note(flow, MARK_STORED if outcome == "stored" else MARK_NOT_STORED, f"MISS {outcome}",
                  key=state["request_key"])
    if near:
        flow.comment += f"\nnear miss: {near}"


def _record(rt: Runtime, flow: http.HTTPFlow, state: FlowState, *, ended_early: bool = False) -> Outcome:
    """Hand a complete success to the store: what became of it (as X-LLM-Cache-Store says it), or a
    future of it once the writer has committed it."""
    if state["skip_store"]:
        return f"skipped: {state['skip_store']}"
    store = rt.stores.get()
    if store is None:
        return "skipped: cache unavailable"
    try:
        answer = _answer_to_store(rt, flow, state, ended_early)
        if isinstance(answer, str):
            return f"skipped: {answer}"
        record = _make_record(rt, flow, state, *answer)
        rt.near_misses.remember(state["entry_key"], flow)
        stored = store.put(record)
        if record.is_stream:  # its events are checked by the writer: shared with followers once committed
            _release_when_stored(state, stored, lambda outcome: rt.flights.release(
                state["entry_key"], record if outcome == "stored" else None))
        else:
            release(rt, state, record)
        return stored
    except RuntimeError as e:  # the writer is far behind: this one is not recorded
        rt.failures.passed_through("recording the response", e)
        return f"skipped: {e}"
    except Exception as e:
        rt.failures.passed_through("recording the response", e)
        return f"skipped: {type(e).__name__}"


def _answer_to_store(rt: Runtime, flow: http.HTTPFlow, state: FlowState,
                     ended_early: bool) -> tuple[list[tuple[str, str]], bytes, bool] | str:
    """(headers, body, is_stream) as the answer is stored, or why it is not: the checks the event
    loop makes (a stream's events are the writer's to check)."""
    response = flow.response
    assert response is not None
    family, limit = state["route"].family, rt.settings.max_response_bytes
    tee = response.stream if isinstance(response.stream, StreamTee) else None
    if tee is not None:
        if tee.problem or not (tee.finished or ended_early):
            return tee.problem or "stream did not finish"
        body = tee.whole()
        if ended_early and (problem := answers.early_end_problem(family, body)):
            return problem
    else:
        try:
            body = messages.content(response, limit)
        except TooLarge:
            return f"response over llm_cache_max_response_bytes ({limit} bytes)"
    wire = answers.wire_of(messages.header(response.headers, b"content-type"), requested=state["wire"])
    is_stream = wire is not Wire.JSON
    try:
        headers, body = answers.framed_for_storage(family, wire, messages.text_fields(response.headers), body)
    except ValueError:
        return "stream did not parse"
    problem = answers.why_not_recorded(family, response.status_code, body, is_stream=is_stream)
    if problem:
        return problem
    if len(body) > limit:
        return f"response over llm_cache_max_response_bytes ({len(body)} bytes)"
    if state["secret"]:
        return f"the request carries {state['secret']}"
    return headers, body, is_stream


def _make_record(rt: Runtime, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]], body: bytes,
                 is_stream: bool) -> Record:
    assert flow.response is not None
    now, controls = time.time(), state["controls"]
    return answers.make_record(
        key=state["entry_key"], family=state["route"].family, target=state["target"], model=state["model"],
        request_body=messages.content(flow.request, rt.settings.max_request_bytes),
        status=flow.response.status_code, headers=headers, body=body, is_stream=is_stream, now=now,
        expires_at=now + controls.ttl if controls.ttl else None, sample=state["sample"], tags=controls.tags,
        profile=state["profile"], user_agent=state["user_agent"], deps=state.get("deps", ()),
        namespace=controls.namespace, semantic=state.get("semantic"),
    )


def _release_when_stored(state: FlowState, stored: Future[str], settle: Callable[[str], None]) -> None:
    """A leader's stream is shared with the requests that wait for it once the writer has checked
    and committed it (the future is settled on a helper thread: the release runs on the event loop)."""
    if state.pop("leads", False):
        loop = asyncio.get_running_loop()  # a leader exists only on the event loop
        stored.add_done_callback(lambda done: loop.call_soon_threadsafe(settle, done.result()))
