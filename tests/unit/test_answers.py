import re

import orjson
import pytest

from llm_cache import answers, anthropic_messages, keys, openai_chat, sse
from llm_cache.endpoints import Family, Wire
from llm_cache.records import NotStorable, Record, derived_columns, headers_to_keep

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "logprobs": None,
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def record(body, is_stream, content_type):
    return Record(key="k" * 64, status=200, headers=[("content-type", content_type), ("x-request-id", "r")],
                  body=body, is_stream=is_stream, created_at=1000.0)


JSON_RECORD = record(orjson.dumps(COMPLETION), False, "application/json")
STREAM_RECORD = record(openai_chat.synthesise(COMPLETION, include_usage=True), True, "text/event-stream")


def test_same_format_replays_the_stored_body_and_headers():
    answer = answers.replay(JSON_RECORD, Family.OPENAI_CHAT, want=Wire.JSON, include_usage=False)
    assert answer is not None
    assert answer.body == JSON_RECORD.body and answer.status == 200
    assert dict(answer.headers)["x-request-id"] == "r"


@pytest.mark.parametrize(("family", "shape"), [
    (Family.OPENAI_CHAT, lambda e: e["error"]["code"] == "invalid_prompt"),  # the Codex CLI prints it as it is
    (Family.OPENAI_RESPONSES, lambda e: e["error"]["type"] == "invalid_request_error"),
    (Family.ANTHROPIC_MESSAGES, lambda e: e["type"] == "error" and e["error"]["type"] == "cache_miss"),
    (Family.GEMINI_GENERATE, lambda e: e["error"]["status"] == "INVALID_ARGUMENT" and e["error"]["code"] == 400),
    (Family.OLLAMA_CHAT, lambda e: isinstance(e["error"], str)),
])
def test_a_replay_miss_is_a_400_in_the_providers_error_shape_that_clients_do_not_retry(family, shape):
    answer = answers.replay_miss(family, "not in the cache")
    error = orjson.loads(answer.body)
    assert answer.status == 400 and shape(error) and "not in the cache" in orjson.dumps(error).decode()
    assert ("x-should-retry", "false") in answer.headers
    asked = answers.replay_miss(family, "not in the cache", only_if_cached=True)
    assert asked.status == 504 and ("x-should-retry", "false") in asked.headers  # RFC 9111, for only-if-cached


def test_json_entry_answers_a_stream_request():
    answer = answers.replay(JSON_RECORD, Family.OPENAI_CHAT, want=Wire.SSE, include_usage=True)
    assert answer is not None
    assert dict(answer.headers)["content-type"].startswith("text/event-stream")
    assert openai_chat.assemble(answer.body) == COMPLETION


def test_stream_entry_answers_a_json_request():
    answer = answers.replay(STREAM_RECORD, Family.OPENAI_CHAT, want=Wire.JSON, include_usage=False)
    assert answer is not None
    assert dict(answer.headers)["content-type"] == "application/json"
    assert orjson.loads(answer.body) == COMPLETION


def test_anthropic_cross_serving_both_ways():
    message = {"id": "m", "type": "message", "role": "assistant", "model": "c", "stop_reason": "end_turn",
               "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 2},
               "content": [{"type": "text", "text": "yo"}]}
    as_stream = answers.replay(record(orjson.dumps(message), False, "application/json"), Family.ANTHROPIC_MESSAGES,
                               want=Wire.SSE, include_usage=False)
    assert as_stream is not None and anthropic_messages.assemble(as_stream.body) == message
    as_json = answers.replay(record(anthropic_messages.synthesise(message), True, "text/event-stream"),
                             Family.ANTHROPIC_MESSAGES, want=Wire.JSON, include_usage=False)
    assert as_json is not None and orjson.loads(as_json.body) == message


def test_a_malformed_stored_stream_is_no_answer():
    delta = {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "x"}}
    orphan_delta = sse.encode([("content_block_delta", delta), ("message_stop", {"type": "message_stop"})])
    broken = record(orphan_delta, True, "text/event-stream")
    assert answers.replay(broken, Family.ANTHROPIC_MESSAGES, want=Wire.JSON, include_usage=False) is None


def test_an_entry_that_cannot_be_converted_is_no_answer():
    embeddings = record(b'{"data": []}', False, "application/json")
    assert answers.replay(embeddings, Family.OPENAI_EMBEDDINGS, want=Wire.SSE, include_usage=False) is None
    truncated_ollama = record(b'{"message": {"content": "a"}, "done": fa', True, "application/x-ndjson")
    assert answers.replay(truncated_ollama, Family.OLLAMA_CHAT, want=Wire.JSON, include_usage=False) is None


@pytest.mark.parametrize(
    "status, body, is_stream, problem",
    [
        (200, orjson.dumps(COMPLETION), False, None),
        (201, orjson.dumps(COMPLETION), False, None),
        (500, orjson.dumps(COMPLETION), False, "upstream status 500"),
        (429, b'{"error": {}}', False, "upstream status 429"),
        (200, STREAM_RECORD.body, True, None),
        # Some OpenAI-compatible servers never send [DONE]: every choice finished, so it is whole.
        (200, STREAM_RECORD.body.replace(b"data: [DONE]\n\n", b""), True, None),
        (200, STREAM_RECORD.body.split(b"\n\n")[0] + b"\n\n", True, "stream ended before [DONE]"),
        (200, STREAM_RECORD.body[:-20], True, "stream has an event that is not JSON"),
    ],
)
def test_only_complete_successes_are_stored(status, body, is_stream, problem):
    if is_stream:  # the loop checks a stream's status; the writer its events (records.derived_columns)
        assert answers.why_not_recorded(Family.OPENAI_CHAT, status, body, is_stream=True) is None
        record = STREAM_RECORD._replace(body=body, family=Family.OPENAI_CHAT.value)
        if problem is None:
            assert derived_columns(record)["assembled"] is not None
        else:
            with pytest.raises(NotStorable, match=re.escape(problem)):
                derived_columns(record)
    else:
        assert answers.why_not_recorded(Family.OPENAI_CHAT, status, body, is_stream=False) == problem


def test_stored_headers_drop_transport_cookies_and_our_own():
    kept = headers_to_keep([
        ("Content-Type", "application/json"), ("Content-Length", "5"), ("Content-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"), ("Connection", "keep-alive"), ("Set-Cookie", "a=b"),
        ("X-LLM-Cache", "MISS"), ("x-request-id", "r1"), ("openai-processing-ms", "12"), ("x-bad", "\udcff"),
    ])
    assert kept == [("Content-Type", "application/json"), ("x-request-id", "r1"), ("openai-processing-ms", "12")]


def test_make_record_filters_headers_and_keeps_the_request_apart():
    target = keys.make_target("POST", "https", "api.openai.com", 443, "/v1/chat/completions?key=AIzaX",
                              [("key", "AIzaX")], [("authorization", "Bearer sk-x"), ("openai-beta", "b")])
    rec = answers.make_record(key="k", family=Family.OPENAI_CHAT, target=target, model="m", request_body=b'{"a":1}',
                              status=200, headers=[("set-cookie", "x"), ("content-type", "text/event-stream")],
                              body=STREAM_RECORD.body, is_stream=True, now=5.0)
    assert rec.headers == [("content-type", "text/event-stream")]
    assert (rec.host, rec.url, rec.keyed_headers) == ("api.openai.com", "https://api.openai.com:443/v1/chat/completions",
                                                      (("openai-beta", "b"),))
    assert list(sse.iter_events(rec.body))[-1].data == "[DONE]"
