"""The addon through mitmproxy's own test helpers: hooks called in the order mitmproxy calls them."""

import asyncio
import email.utils
import gzip
import io
import logging
import re
import time
import zlib

import brotli
import orjson
import pytest
import zstandard
from mitmproxy import exceptions, http
from mitmproxy import flow as flow_module
from mitmproxy import io as mitmproxy_io
from mitmproxy.test import taddons, tflow, tutils

import addon as llm_addon
from llm_cache import anthropic_messages, formats, messages, openai_chat, openai_responses, stores
from llm_cache.records import unpack_request
from tests.support.procs import wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                           "logprobs": None, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
SECRET = "sk-proj-SECRETSECRET123"


def llm_flow(body=CHAT, *, path="/v1/chat/completions", host="api.openai.com", method=b"POST",
             content_type="application/json", extra_headers=()):
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = http.Headers([(b"content-type", content_type.encode()), (b"authorization", f"Bearer {SECRET}".encode()),
                            *extra_headers])
    request = tutils.treq(method=method, scheme=b"https", host=host, port=443, path=path.encode(),
                          headers=headers, content=raw)
    return tflow.tflow(req=request)


def send(cache, flow):
    """mitmproxy's request side: requestheaders, then request."""
    cache.requestheaders(flow)
    cache.request(flow)
    return flow


def upstream(cache, flow, status=200, body=b"", content_type="application/json", chunks=None, finish=True,
             headers=()):
    """mitmproxy's response side; `chunks` makes it a stream fed through the stream callable."""
    flow.response = tutils.tresp(status_code=status, content=b"" if chunks is not None else body,
                                 headers=http.Headers([(b"content-type", content_type.encode()), *headers]))
    cache.responseheaders(flow)
    if chunks is not None:
        assert callable(flow.response.stream), "a streamed miss must be teed"
        forwarded = b"".join(flow.response.stream(c) for c in chunks)
        assert forwarded == b"".join(chunks), "the client must get the stream untouched"
        if finish:
            flow.response.stream(b"")
    answered = cache.response(flow)
    if answered is not None:  # a recorded miss waits for its commit before it is answered
        asyncio.run(answered)
    elif chunks is not None and cache.store is not None:
        cache.store.flush()  # a recorded stream's outcome reaches its flow once it is written
    return flow


async def upstream_async(cache, flow, body):
    """`upstream` for a JSON answer, from a test that runs on an event loop."""
    flow.response = tutils.tresp(content=body, headers=http.Headers([(b"content-type", b"application/json")]))
    cache.responseheaders(flow)
    answered = cache.response(flow)
    if answered is not None:
        await answered
    return flow


@pytest.fixture
def cache(tmp_path):
    cache = llm_addon.LLMCache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, confdir=str(tmp_path))
        yield cache
        cache.done()


def stored(cache):
    cache.store.flush()
    return cache.store.stats()["entries"]


def test_miss_is_recorded_then_answered_from_the_cache(cache):
    miss = send(cache, llm_flow())
    assert miss.response is None and miss.metadata["llm_cache"]["status"] == "MISS"
    upstream(cache, miss, body=orjson.dumps(COMPLETION), headers=[(b"set-cookie", b"s=1"), (b"x-request-id", b"r1"),
                                                                  (b"date", b"Mon, 01 Jan 2024 00:00:00 GMT")])
    assert miss.response.headers["X-LLM-Cache"] == "MISS"
    assert miss.response.headers["X-LLM-Cache-Store"] == "stored"
    key = miss.metadata["llm_cache"]["request_key"]
    assert miss.marked == messages.MARK_STORED and miss.comment == f"MISS stored · {key[:12]}"
    assert not miss.is_replay

    hit = send(cache, llm_flow())
    assert hit.response is not None
    assert orjson.loads(hit.response.content) == COMPLETION
    assert hit.response.headers["X-LLM-Cache"] == "HIT"
    assert hit.response.headers["X-LLM-Cache-Key"] == miss.metadata["llm_cache"]["request_key"]
    assert hit.response.headers["X-LLM-Cache-Age"] == "0"
    assert hit.response.headers["x-request-id"] == "r1" and "set-cookie" not in hit.response.headers
    assert hit.marked == messages.MARK_HIT and hit.comment == f"HIT · age 0s · {key[:12]}"
    assert hit.is_replay == "response"  # as mitmproxy's server replay marks one: `~replays`, mitmdump's [replay]
    assert hit.response.headers["date"] != "Mon, 01 Jan 2024 00:00:00 GMT"  # today's, as server replay gives it
    assert abs(email.utils.parsedate_to_datetime(hit.response.headers["date"]).timestamp() - time.time()) < 5
    assert stored(cache) == 1 and cache.store.stats()["hits"] == 1
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_refresh_date=False)
        assert send(cache, llm_flow()).response.headers["date"] == "Mon, 01 Jan 2024 00:00:00 GMT"


def test_every_recognised_flow_is_marked_outcome_first(cache):
    bypass = send(cache, llm_flow(extra_headers=[(b"x-cache-bypass", b"true")]))
    assert bypass.marked == messages.MARK_BYPASS and bypass.comment == "BYPASS: X-Cache-Bypass: true"
    failed = upstream(cache, send(cache, llm_flow({**CHAT, "seed": 1})), status=500, body=b'{"error": {}}')
    assert failed.comment.startswith("MISS skipped: upstream status 500 · ")
    other = send(cache, tflow.tflow(req=tutils.treq(method=b"GET", path=b"/index.html")))
    assert not other.marked and not other.comment


def test_a_recorded_stream_stays_in_its_flow_for_mitmweb(cache):
    body = openai_chat.synthesise(COMPLETION, include_usage=False)
    flow = upstream(cache, send(cache, llm_flow({**CHAT, "stream": True})), content_type="text/event-stream",
                    chunks=[body[:50], body[50:]])
    assert flow.metadata["llm_cache"]["store"] == "stored"
    assert flow.response.content == body  # mitmproxy keeps no streamed body: "Content is missing" without this


@pytest.mark.parametrize("status, body, headers", [
    (200, b'{"id": "x"}', [("content-type", "application/json"), ("X-LLM-Cache", "HIT")]),
    (200, b"data: [DONE]\n\n", [("content-type", "text/event-stream"), ("x-request-id", "r\u00e9")]),
    (504, b'{"error": {}}', [("content-type", "application/json"), ("x-should-retry", "false")]),
    (299, b"", []),  # a status without a reason phrase
    (200, b"plain", [("content-encoding", "gzip")]),  # make compresses it: left to make
    (200, b"plain", [("transfer-encoding", "chunked")]),  # no content-length: left to make
])
def test_answers_are_the_responses_mitmproxy_would_make(status, body, headers):
    made = messages.make_response(status, body, headers)
    expected = http.Response.make(status, body, http.Headers([(n.encode(), v.encode()) for n, v in headers]))
    state, expected_state = made.get_state(), expected.get_state()
    for moment in ("timestamp_start", "timestamp_end"):
        assert abs(state.pop(moment) - expected_state.pop(moment)) < 5
    assert state == expected_state
    assert made.content == body
    assert made.data is not messages.MADE.data and messages.MADE.status_code == 200  # the template is untouched


@pytest.mark.parametrize(
    "flow",
    [
        lambda: llm_flow(method=b"GET"),
        lambda: llm_flow(path="/v1/models"),
        lambda: llm_flow(path="/v1/messages/count_tokens"),
        lambda: llm_flow(b"not json at all"),
        lambda: llm_flow({"model": "m"}),  # right path, wrong shape
        lambda: llm_flow(content_type="multipart/form-data; boundary=x"),
    ],
    ids=["get", "other-path", "count-tokens", "not-json", "wrong-shape", "multipart"],
)
def test_other_traffic_passes_untouched_and_unrecorded(cache, flow):
    f = send(cache, flow())
    assert f.response is None and "llm_cache" not in f.metadata
    upstream(cache, f, body=orjson.dumps(COMPLETION))
    assert "X-LLM-Cache" not in f.response.headers and not f.marked
    assert stored(cache) == 0


def test_absurdly_nested_json_passes_through(cache, caplog):
    deep = b'{"model": "m", "messages": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    with caplog.at_level(logging.WARNING):
        f = send(cache, llm_flow(deep))
    assert f.response is None and "llm_cache" not in f.metadata
    assert "reading the request body failed" in caplog.text


def test_a_flow_answered_by_another_addon_is_left_alone(cache):
    f = llm_flow()
    f.response = tutils.tresp()
    send(cache, f)
    assert "llm_cache" not in f.metadata


@pytest.mark.parametrize(
    "encoding, compress",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress),
     ("zstd", lambda b: zstandard.ZstdCompressor().compress(b))],
)
def test_compressed_request_bodies_are_keyed_on_their_content(cache, encoding, compress):
    plain = send(cache, llm_flow())
    upstream(cache, plain, body=orjson.dumps(COMPLETION))
    packed = llm_flow(extra_headers=[(b"content-encoding", encoding.encode())])
    packed.request.raw_content = compress(orjson.dumps(CHAT))
    assert packed.request.raw_content != orjson.dumps(CHAT)
    send(cache, packed)
    assert packed.response is not None and packed.response.headers["X-LLM-Cache"] == "HIT"


def test_an_undecodable_request_body_passes_through(cache, caplog):
    broken = llm_flow(extra_headers=[(b"content-encoding", b"gzip")])
    broken.request.raw_content = b"not gzip at all"
    with caplog.at_level(logging.WARNING):
        send(cache, broken)
    assert broken.response is None and "llm_cache" not in broken.metadata
    assert "reading the request body failed" in caplog.text


def test_the_key_is_taken_before_other_addons_rewrite_the_url(cache):
    first = llm_flow()
    cache.requestheaders(first)
    first.request.host, first.request.port = "localhost", 8000  # what --map-remote does in `request`
    cache.request(first)
    upstream(cache, first, body=orjson.dumps(COMPLETION))
    assert send(cache, llm_flow()).response.headers["X-LLM-Cache"] == "HIT"


def test_upstream_errors_are_passed_on_and_not_stored(cache):
    f = upstream(cache, send(cache, llm_flow()), status=500, body=b'{"error": {"message": "boom"}}')
    assert f.response.status_code == 500
    assert f.response.headers["X-LLM-Cache-Store"] == "skipped: upstream status 500"
    assert f.marked == messages.MARK_NOT_STORED
    assert send(cache, llm_flow()).response is None


def test_a_stream_is_teed_stored_and_replayed_in_both_formats(cache):
    stream_body = openai_chat.synthesise(COMPLETION, include_usage=True)
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    f = upstream(cache, send(cache, llm_flow(request)), content_type="text/event-stream",
                 chunks=[stream_body[i:i + 50] for i in range(0, len(stream_body), 50)])
    assert f.metadata["llm_cache"]["store"] == "stored" and "X-LLM-Cache-Store" not in f.response.headers

    again = send(cache, llm_flow(request))
    assert again.response.content == stream_body
    assert again.response.headers["content-type"] == "text/event-stream"

    as_json = send(cache, llm_flow(CHAT))
    assert orjson.loads(as_json.response.content) == COMPLETION
    assert as_json.response.headers["content-type"] == "application/json"


def test_a_compressed_stream_is_stored_decoded(cache):
    stream_body = openai_chat.synthesise(COMPLETION, include_usage=False)
    wire = gzip.compress(stream_body)
    request = {**CHAT, "stream": True}
    upstream(cache, send(cache, llm_flow(request)), content_type="text/event-stream",
             headers=[(b"content-encoding", b"gzip")], chunks=[wire[:40], wire[40:]])
    hit = send(cache, llm_flow(request))
    assert hit.response.content == stream_body and "content-encoding" not in hit.response.headers


@pytest.mark.parametrize(
    "body, finish, reason",
    [
        (openai_chat.synthesise(COMPLETION, include_usage=False), False, "skipped: stream did not finish"),
        (openai_chat.synthesise(COMPLETION, include_usage=False).split(b"\n\n")[0] + b"\n\n", True,
         "skipped: stream ended before [DONE]"),
        (b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n', True,
         "skipped: stream carries an error event"),
    ],
    ids=["aborted", "no-done", "error-event"],
)
def test_incomplete_streams_are_not_stored(cache, body, finish, reason):
    f = upstream(cache, send(cache, llm_flow({**CHAT, "stream": True})), content_type="text/event-stream",
                 chunks=[body], finish=finish)
    assert f.metadata["llm_cache"]["store"] == reason
    assert stored(cache) == 0
    assert cache.store.writes["lost"] == 0  # an answer that was never a success is not a lost entry


def test_a_stream_is_never_served_before_the_writer_has_checked_it(cache, monkeypatch):
    # A stream's events are checked in the writer process, off the event loop: until it has
    # committed the entry, an identical request must not be answered from it.
    monkeypatch.setattr(cache.store._writer, "flush", lambda: None)
    held = []
    monkeypatch.setattr(cache.store._writer, "submit", lambda op: held.append(op) or len(held))
    request = {**CHAT, "stream": True}
    broken = b'data: {"error": {"message": "overloaded"}}\n\ndata: [DONE]\n\n'
    first = upstream(cache, send(cache, llm_flow(request)), content_type="text/event-stream", chunks=[broken])
    assert first.metadata["llm_cache"]["store"].startswith("queued: not written yet")
    assert [type(op).__name__ for op in held] == ["Record", "MissCounts"]
    again = send(cache, llm_flow(request))
    assert again.response is None and again.metadata["llm_cache"]["status"] == "MISS"


def test_flow_state_is_plain_data_that_saves_and_loads(cache):
    flow = send(cache, llm_flow())
    upstream(cache, flow, body=orjson.dumps(COMPLETION))
    saved = io.BytesIO()
    mitmproxy_io.FlowWriter(saved).add(flow)
    saved.seek(0)
    (loaded,) = mitmproxy_io.FlowReader(saved).stream()
    state = loaded.metadata["llm_cache"]
    assert state["status"] == "MISS" and state["store"] == "stored"
    assert state["entry_key"] == flow.metadata["llm_cache"]["entry_key"] == flow.response.headers["X-LLM-Cache-Key"]


RESPONSE = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5", "usage": None,
            "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "hey", "annotations": []}]}]}


@pytest.mark.parametrize(("path", "request_body", "stream_body", "stored_as"), [
    ("/v1/responses", {"model": "gpt-5", "input": "hi", "stream": True},
     openai_responses.synthesise(RESPONSE), "stored"),
    ("/v1/responses", {"model": "gpt-5", "input": "hi", "stream": True},
     openai_responses.synthesise(RESPONSE).rsplit(b"event: response.completed", 1)[0],
     "skipped: stream ended before response.completed"),
    ("/v1/chat/completions", {**CHAT, "stream": True},
     openai_chat.synthesise(COMPLETION, include_usage=False), "stored"),
    ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
     openai_chat.synthesise(COMPLETION, include_usage=True).rsplit(b"data: {", 1)[0],  # finish_reason, no usage
     "skipped: stream ended before [DONE]"),
], ids=["responses-complete", "responses-cut", "chat-complete", "chat-before-usage"])
def test_a_stream_that_ends_in_an_error_is_stored_only_past_its_terminal_event(cache, path, request_body,
                                                                                stream_body, stored_as):
    # The Codex CLI resets its HTTP/2 stream once it has response.completed: mitmproxy then calls
    # `error`, not `response`, and the stream callable never gets its final b"".
    flow = send(cache, llm_flow(request_body, path=path))
    flow.response = tutils.tresp(content=b"", headers=http.Headers([(b"content-type", b"text/event-stream")]))
    cache.responseheaders(flow)
    assert flow.response.headers["X-LLM-Cache"] == "MISS"
    assert flow.response.headers["X-LLM-Cache-Key"] == flow.metadata["llm_cache"]["entry_key"]  # where it is stored
    flow.response.stream(stream_body)
    flow.error = flow_module.Error("client disconnected")
    cache.error(flow)
    cache.store.flush()
    assert flow.metadata["llm_cache"]["store"] == stored_as
    assert stored(cache) == (1 if stored_as == "stored" else 0)
    if stored_as == "stored":
        hit = send(cache, llm_flow(request_body, path=path))
        assert hit.response.content == stream_body and hit.response.headers["X-LLM-Cache"] == "HIT"


def test_anthropic_messages_with_claude_codes_beta_query(cache):
    message = {"id": "m1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
               "content": [{"type": "text", "text": "hey"}]}
    body = {"model": "claude", "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    stream = anthropic_messages.synthesise(message)

    def flow(b):
        return llm_flow(b, host="api.anthropic.com", path="/v1/messages?beta=true",
                        extra_headers=[(b"anthropic-version", b"2023-06-01")])

    upstream(cache, send(cache, flow(body)), content_type="text/event-stream", chunks=[stream])
    assert send(cache, flow(body)).response.content == stream
    as_json = send(cache, flow({**body, "stream": False}))
    assert orjson.loads(as_json.response.content) == message


def test_credentials_never_reach_the_database(cache, tmp_path):
    f = send(cache, llm_flow(path="/v1/chat/completions?key=AIzaQUERYSECRET",
                             extra_headers=[(b"x-api-key", b"sk-ant-HEADERSECRET"), (b"api-key", b"AZURESECRET")]))
    upstream(cache, f, body=orjson.dumps(COMPLETION))
    cache.done()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("llm-cache.sqlite3*"))
    assert len(data) > 0
    for secret in (SECRET, "AIzaQUERYSECRET", "sk-ant-HEADERSECRET", "AZURESECRET"):
        assert secret.encode() not in data


def test_a_failing_lookup_passes_the_flow_through_with_one_log_line(cache, caplog, monkeypatch):
    def broken(key):
        raise RuntimeError("database disk image is malformed")

    monkeypatch.setattr(cache.store, "find_json", broken)  # a JSON request reads its answer so
    with caplog.at_level(logging.WARNING):
        flows = [send(cache, llm_flow()) for _ in range(3)]
    assert all(f.response is None and "llm_cache" not in f.metadata for f in flows)
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1 and "passing the request through uncached" in lines[0].getMessage()


def test_an_unusable_database_means_plain_pass_through(tmp_path, caplog):
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"garbage" * 1000)
    cache = llm_addon.LLMCache()
    with caplog.at_level(logging.WARNING), taddons.context(cache) as tctx:
        tctx.configure(cache, confdir=str(tmp_path), llm_cache_db=f"sqlite:///{corrupt}")
        f = send(cache, llm_flow())
        upstream(cache, f, body=orjson.dumps(COMPLETION))
        assert cache.store is None and "llm_cache" not in f.metadata
        assert "X-LLM-Cache" not in f.response.headers
        with pytest.raises(exceptions.CommandError, match="unavailable"):
            cache.stats()
    assert "opening the cache database" in caplog.text and corrupt.read_bytes() == b"garbage" * 1000


def test_a_database_that_comes_back_is_used_again(tmp_path, monkeypatch):
    cache = llm_addon.LLMCache()
    missing_dir = tmp_path / "not-yet"
    with taddons.context(cache) as tctx:
        missing_dir.write_text("a file where the database folder should be")
        tctx.configure(cache, confdir=str(tmp_path), llm_cache_db=f"sqlite:///{missing_dir}/c.sqlite3")
        assert cache.store is None
        missing_dir.unlink()
        monkeypatch.setattr(stores, "REOPEN_AFTER", 0)
        cache.rt.stores.reopen_at = 0
        first = send(cache, llm_flow())  # opening again happens on a thread: this one passes through
        assert "llm_cache" not in first.metadata
        assert wait_for(lambda: cache.store is not None)
        f = send(cache, llm_flow())
        assert f.metadata["llm_cache"]["status"] == "MISS"
        cache.done()


@pytest.mark.parametrize("value", ["mysql://x/y", "sqlite:///:memory:", "cache.db"])
def test_bad_database_option_is_refused(cache, value):
    with taddons.context(cache) as tctx:
        with pytest.raises(exceptions.OptionsError, match="llm_cache_db"):
            tctx.configure(cache, llm_cache_db=value)


def test_relative_sqlite_paths_live_in_the_confdir(cache, tmp_path):
    assert cache.rt.stores.url == f"sqlite:///{tmp_path}/llm-cache.sqlite3"


def test_stats_and_clear_commands(cache):
    upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))
    send(cache, llm_flow())
    table = cache.stats()
    assert table[0] == ["family", "entries", "hits", "bytes"]
    assert table[1][:3] == ["openai.chat", "1", "1"] and table[2][:3] == ["all", "1", "1"]
    rows = {row[0]: row[1:] for row in table}
    assert rows["hit rate"] == ["50.0%", "1 hits", "1 misses"]  # one miss went upstream, one hit did not
    assert rows["tokens saved"] == ["input 1", "output 2", ""]  # the hit's entry's usage
    assert rows["this run"] == ["stored 1", "lost 0", "waiting 0"]
    assert cache.clear() == 1
    assert send(cache, llm_flow()).response is None


@pytest.mark.parametrize(("option", "value", "message"), [
    ("llm_cache_mode", "playback", "llm_cache_mode must be one of record, replay, refresh, readonly, writeonly, off"),
    ("llm_cache_samples", 0, "llm_cache_samples must be 1 or more"),
    ("llm_cache_normalise", ["("], "not a valid regular expression"),
])
def test_bad_control_options_are_refused(cache, option, value, message):
    with taddons.context(cache) as tctx:
        with pytest.raises(exceptions.OptionsError, match=re.escape(message)):
            tctx.configure(cache, **{option: value})


def test_invalidate_commands(cache):
    tagged = llm_flow(extra_headers=[(b"x-llm-cache-tags", b"eval-7")])
    upstream(cache, send(cache, tagged), body=orjson.dumps(COMPLETION))
    assert "x-llm-cache-tags" not in tagged.request.headers, "our headers never go upstream"
    other = llm_flow({**CHAT, "model": "gpt-x"}, host="api.groq.com")
    upstream(cache, send(cache, other), body=orjson.dumps(COMPLETION))
    assert (cache.invalidate("eval-8"), cache.invalidate("eval-7")) == (0, 1)
    assert (cache.invalidate_model("gpt-4o-mini"), cache.invalidate_host("api.groq.com")) == (0, 1)
    assert stored(cache) == 0


def test_off_mode_leaves_llm_calls_alone(cache):
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_mode="off")
        flow = send(cache, llm_flow())
        assert flow.response is None and "llm_cache" not in flow.metadata


def test_stale_if_error_serves_an_expired_entry_when_the_upstream_fails(cache, monkeypatch):
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_ttl=10, llm_cache_stale_if_error=True)
        upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))
        later = time.time() + 11
        monkeypatch.setattr(time, "time", lambda: later)
        failing = llm_flow()
        cache.requestheaders(failing)
        probe = cache.request(failing)
        assert failing.response is None and probe is not None
        probe.close()  # the reachability check; here the upstream "answers"
        upstream(cache, failing, status=503, body=b'{"error": {}}')
        assert failing.response.status_code == 200 and failing.response.headers["X-LLM-Cache"] == "STALE"
        assert orjson.loads(failing.response.content) == COMPLETION
        fine = llm_flow()
        cache.requestheaders(fine)
        cache.request(fine).close()
        upstream(cache, fine, body=orjson.dumps({**COMPLETION, "id": "c2"}))
        assert fine.response.headers["X-LLM-Cache"] == "MISS" and not cache.rt.stale


def test_replay_mode_answers_a_miss_with_a_400_naming_the_closest_entry(cache):
    upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_mode="replay")
        assert send(cache, llm_flow()).response.headers["X-LLM-Cache"] == "HIT"
        miss = send(cache, llm_flow({**CHAT, "temperature": 0.5}))
        assert miss.response.status_code == 400 and miss.marked == messages.MARK_NOT_STORED
        assert miss.metadata["llm_cache"]["status"] == "REPLAY_MISS" and miss.response.headers["X-LLM-Cache"] == "MISS"
        assert "differs at: temperature." in orjson.loads(miss.response.content)["error"]["message"]
        cache.response(miss)
        assert stored(cache) == 1


# -- other protocols -------------------------------------------------------------------------------

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
GEMINI_CHUNKS = [{"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": 0, **f}]}
                 for t, f in (("Hel", {}), ("lo", {"finishReason": "STOP"}))]


def test_a_gemini_json_array_stream_is_teed_stored_as_sse_and_answers_every_framing(cache):
    base = "/v1beta/models/gemini-2.5-flash"
    miss = send(cache, llm_flow(GEMINI_BODY, path=f"{base}:streamGenerateContent?key=AIzaSECRET",
                                host="generativelanguage.googleapis.com"))
    pieces = [b"[" + orjson.dumps(GEMINI_CHUNKS[0]), b",\r\n" + orjson.dumps(GEMINI_CHUNKS[1]), b"]"]
    upstream(cache, miss, content_type="application/json; charset=UTF-8", chunks=pieces)
    assert miss.metadata["llm_cache"]["store"] == "stored" and stored(cache) == 1
    sse_hit = send(cache, llm_flow(GEMINI_BODY, path=f"{base}:streamGenerateContent?alt=sse",
                                   host="generativelanguage.googleapis.com"))
    assert sse_hit.response.headers["X-LLM-Cache"] == "HIT"
    assert sse_hit.response.headers["content-type"].startswith("text/event-stream")
    assert sse_hit.response.content.count(b"data: ") == 2
    json_hit = send(cache, llm_flow(GEMINI_BODY, path=f"{base}:generateContent",
                                    host="generativelanguage.googleapis.com"))
    assert orjson.loads(json_hit.response.content)["candidates"][0]["content"]["parts"] == [{"text": "Hello"}]
    array_hit = send(cache, llm_flow(GEMINI_BODY, path=f"{base}:streamGenerateContent",
                                     host="generativelanguage.googleapis.com"))
    assert orjson.loads(array_hit.response.content) == GEMINI_CHUNKS
    (_, _, packed), = cache.store.recent_requests("gemini.generate", "generativelanguage.googleapis.com")
    assert unpack_request(packed)["url"].endswith(":streamGenerateContent")  # ?key= is never stored


def test_a_cut_gemini_json_array_is_not_stored(cache):
    miss = send(cache, llm_flow(GEMINI_BODY, path="/v1beta/models/g:streamGenerateContent",
                                host="generativelanguage.googleapis.com"))
    upstream(cache, miss, content_type="application/json", chunks=[b"[" + orjson.dumps(GEMINI_CHUNKS[0])])
    assert miss.metadata["llm_cache"]["store"] == "skipped: stream did not parse"


def test_an_ollama_request_without_stream_is_a_stream_recorded_as_ndjson(cache):
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi"}]}
    lines = [b'{"model":"llama3.2","message":{"role":"assistant","content":"Hi"},"done":false}\n',
             b'{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"eval_count":1}\n']
    miss = send(cache, llm_flow(body, path="/api/chat", host="localhost"))
    assert miss.metadata["llm_cache"]["wire"] == "ndjson"
    upstream(cache, miss, content_type="application/x-ndjson", chunks=lines)
    assert miss.metadata["llm_cache"]["store"] == "stored"
    hit = send(cache, llm_flow({**body, "stream": False}, path="/api/chat", host="localhost"))
    assert orjson.loads(hit.response.content)["message"]["content"] == "Hi"


@pytest.mark.parametrize("refuse", [True, False])
def test_the_codex_websocket_upgrade_is_refused_with_426_unless_turned_off(cache, refuse):
    with taddons.context(cache) as tctx:
        tctx.configure(cache, llm_cache_refuse_websocket=refuse)
        flow = llm_flow(b"", path="/backend-api/codex/responses", host="chatgpt.com", method=b"GET",
                        extra_headers=[(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
        cache.requestheaders(flow)
        if refuse:
            assert flow.response.status_code == 426 and flow.response.headers["X-LLM-Cache"] == "BYPASS"
            assert orjson.loads(flow.response.content)["error"]["code"] == "websocket_refused"
        else:
            assert flow.response is None and "llm_cache" not in flow.metadata


def test_bedrock_is_recognised_and_bypassed_without_reading_the_body(cache):
    flow = send(cache, llm_flow({"messages": []}, path="/model/anthropic.claude-v2:1/invoke-with-response-stream",
                                host="bedrock-runtime.us-east-1.amazonaws.com"))
    assert flow.response is None and flow.metadata["llm_cache"]["status"] == "BYPASS"
    upstream(cache, flow, content_type="application/vnd.amazon.eventstream", body=b"\x00\x00")
    assert flow.response.headers["X-LLM-Cache"] == "BYPASS" and "Bedrock" in flow.response.headers["X-LLM-Cache-Reason"]
    assert flow.response.stream is True  # binary event stream: forwarded as it comes, never teed


def test_the_secret_scan_follows_its_option_though_facts_are_remembered(tmp_path):
    # The scan's verdict is remembered with the body's key facts; turning the option off or on (or
    # into a mode that never records) must not leave a stale verdict behind.
    leaky = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "my key is AKIAQWERTYUIOPASDFGH"}]}
    cache = llm_addon.LLMCache()
    with taddons.context(cache) as tctx:
        tctx.configure(cache, confdir=str(tmp_path))

        def outcome():
            flow = upstream(cache, send(cache, llm_flow(leaky)), body=orjson.dumps(COMPLETION))
            return flow.response.headers.get("X-LLM-Cache-Store")

        assert outcome() == "skipped: the request carries an AWS access key"
        tctx.configure(cache, llm_cache_scan_secrets=False)
        assert outcome() == "stored"
        tctx.configure(cache, llm_cache_scan_secrets=True, llm_cache_mode="refresh")
        assert outcome() == "skipped: the request carries an AWS access key"
        tctx.configure(cache, llm_cache_mode="readonly")
        assert cache.rt.memo.scanner is None  # nothing is recorded, so nothing is scanned
        cache.done()


async def test_a_recorded_near_miss_is_logged_and_added_to_its_flows_comment(cache, caplog):
    cache.rt.loop = asyncio.get_running_loop()  # set by the running hook in mitmdump
    caplog.set_level(logging.INFO)
    first = await upstream_async(cache, send(cache, llm_flow(
        {**CHAT, "messages": [{"role": "user", "content": "run 1234"}]})), orjson.dumps(COMPLETION))
    second = await upstream_async(cache, send(cache, llm_flow(
        {**CHAT, "messages": [{"role": "user", "content": "run 5678"}]})), orjson.dumps(COMPLETION))
    cache.store.flush()
    for _ in range(100):
        if "near miss" in second.comment:
            break
        await asyncio.sleep(0.02)
    entry = second.metadata["llm_cache"]["entry_key"]
    assert f"near miss: {entry[:12]} differs from {first.metadata['llm_cache']['entry_key'][:12]}" in second.comment
    assert second.comment.startswith("MISS stored") and "near miss" not in first.comment
    assert f"llmcache.explain {entry[:12]}" in caplog.text
    explained = "\n".join(cache.explain(entry[:12]))
    assert "messages[0].content" in explained and "(?<=run )[0-9]+" in explained
    with pytest.raises(exceptions.CommandError, match="no entry has a key starting with 'ffff'"):
        cache.explain("ffff")


def test_a_json_request_is_answered_from_a_streams_answer_assembled_when_it_was_written(cache, monkeypatch):
    stream_body = openai_chat.synthesise(COMPLETION, include_usage=True)
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    upstream(cache, send(cache, llm_flow(request)), content_type="text/event-stream",
             chunks=[stream_body[i:i + 64] for i in range(0, len(stream_body), 64)])
    cache.store.flush()

    def never(*args):
        raise AssertionError("assembled on the event loop")

    monkeypatch.setattr(formats, "stream_to_json", never)
    as_json = send(cache, llm_flow(CHAT))
    assert as_json.response.headers["X-LLM-Cache"] == "HIT"
    assert orjson.loads(as_json.response.content) == COMPLETION
    assert as_json.response.headers["content-type"] == "application/json"
    assert send(cache, llm_flow(request)).response.content == stream_body  # a stream request gets the stream


def test_a_follower_relayed_a_live_stream_shows_where_it_went_and_keeps_the_stream(cache):
    # Single flight hands a follower the leader's stream through a relay on 127.0.0.1 (its request is
    # pointed there); on the way back the flow shows its own destination and keeps what it got.
    flow = send(cache, llm_flow({**CHAT, "stream": True}))
    state = flow.metadata["llm_cache"]
    state.update({"status": "HIT", "entry_key": state["request_key"],
                  "relayed_from": ("https", "api.openai.com", 443, "/v1/chat/completions")})
    flow.request.scheme, flow.request.host, flow.request.port, flow.request.path = "http", "127.0.0.1", 9, "/x"
    body = openai_chat.synthesise(COMPLETION, include_usage=False)
    flow.response = tutils.tresp(content=b"", headers=http.Headers([(b"content-type", b"text/event-stream")]))
    cache.responseheaders(flow)
    assert flow.request.url == "https://api.openai.com/v1/chat/completions"
    assert flow.response.headers["X-LLM-Cache"] == "HIT" and flow.is_replay == "response"
    assert b"".join(flow.response.stream(c) for c in (body[:40], body[40:], b"")) == body
    assert cache.response(flow) is None
    assert flow.response.content == body and flow.comment.startswith("HIT · the live stream")


def test_an_answer_reported_bad_is_asked_again_and_recorded_anew(cache):
    upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))
    hit = send(cache, llm_flow())
    key = hit.response.headers["X-LLM-Cache-Key"]
    again = send(cache, llm_flow(extra_headers=[(b"x-llm-cache-reject", key.encode())]))
    assert again.response is None and "x-llm-cache-reject" not in again.request.headers  # goes upstream
    upstream(cache, again, body=orjson.dumps({**COMPLETION, "id": "c2"}))
    assert again.response.headers["X-LLM-Cache-Store"] == "stored"
    assert orjson.loads(send(cache, llm_flow()).response.content)["id"] == "c2"  # the new answer replaced it


def test_the_reject_command_deletes_an_entry_by_its_key_prefix(cache):
    upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))
    key = send(cache, llm_flow()).response.headers["X-LLM-Cache-Key"]
    assert cache.reject(key[:10]) == key
    assert stored(cache) == 0 and send(cache, llm_flow()).response is None
    with pytest.raises(exceptions.CommandError, match="no entry has a key starting with"):
        cache.reject(key[:10])


def test_bumping_a_dependency_makes_the_entries_recorded_under_it_stale(cache):
    depends = [(b"x-llm-cache-deps", b"doc:42=v1")]
    upstream(cache, send(cache, llm_flow(extra_headers=depends)), body=orjson.dumps(COMPLETION))
    assert send(cache, llm_flow(extra_headers=depends)).response.headers["X-LLM-Cache"] == "HIT"
    assert send(cache, llm_flow()).response.headers["X-LLM-Cache"] == "HIT"  # one that names no dependency
    assert cache.bump("doc:42", "v2") == "doc:42 is at v2: entries recorded under another version are stale"
    assert send(cache, llm_flow()).response is None  # goes upstream
    with pytest.raises(exceptions.CommandError, match="not a dependency and version"):
        cache.bump("doc 42", "v3")


def test_an_entry_keeps_the_namespace_it_was_recorded_in_for_listing(cache):
    from cache_models import CacheEntry

    upstream(cache, send(cache, llm_flow(extra_headers=[(b"x-llm-cache-namespace", b"team-a")])),
             body=orjson.dumps(COMPLETION))
    upstream(cache, send(cache, llm_flow()), body=orjson.dumps(COMPLETION))  # another key: no namespace
    cache.store.flush()
    assert sorted((ns or "") for ns, in CacheEntry.select(CacheEntry.namespace).tuples()) == ["", "team-a"]
