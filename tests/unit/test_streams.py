import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_cache import anthropic_messages, formats, openai_chat, openai_completions, sse
from llm_cache.endpoints import Family


def chat_stream(*deltas, usage=None, done=True, extra=()):
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}
    events = [(None, {**base, "choices": [{"index": 0, "delta": d, "finish_reason": f}]}) for d, f in deltas]
    events += list(extra)
    if usage:
        events.append((None, {**base, "choices": [], "usage": usage}))
    if done:
        events.append((None, "[DONE]"))
    return sse.encode(events)


TOOL_STREAM = chat_stream(
    ({"role": "assistant", "content": None}, None),
    ({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                      "function": {"name": "f", "arguments": ""}}]}, None),
    ({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}, None),
    ({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}, None),
    ({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                      "function": {"name": "g", "arguments": "{}"}}]}, None),
    ({}, "tool_calls"),
    usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
)


def test_sse_parser_handles_comments_crlf_multiline_and_names():
    body = b": OPENROUTER PROCESSING\r\n\r\nevent: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata:x\n\n\n\ndata: [DONE]\n\n"
    assert list(sse.iter_events(body)) == [sse.Event("a", "1\n2"), sse.Event(None, "x"), sse.Event(None, "[DONE]")]


def test_chat_assembly_of_text_and_usage():
    body = chat_stream(({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None),
                       ({"content": "lo"}, None), ({}, "stop"), usage={"prompt_tokens": 1, "completion_tokens": 2})
    completion = openai_chat.assemble(body)
    assert completion["object"] == "chat.completion"
    assert completion["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                      "logprobs": None, "finish_reason": "stop"}]
    assert completion["usage"] == {"prompt_tokens": 1, "completion_tokens": 2}


def test_chat_assembly_of_parallel_tool_calls():
    message = openai_chat.assemble(TOOL_STREAM)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_synthesis_round_trips(include_usage):
    completion = openai_chat.assemble(TOOL_STREAM)
    stream = openai_chat.synthesise(completion, include_usage=include_usage)
    assert openai_chat.stream_problem(stream) is None
    again = openai_chat.assemble(stream)
    if not include_usage:
        completion.pop("usage")
    assert again == completion
    events = sse.json_events(stream, done_marker="[DONE]")
    has_usage_chunk = any(isinstance(d, dict) and d.get("usage") for _, d in events)
    assert has_usage_chunk is include_usage


@pytest.mark.parametrize(
    "body, problem",
    [
        (chat_stream(({"content": "a"}, "stop")), None),
        (chat_stream(({"content": "a"}, None), done=False), "stream ended before [DONE]"),
        (chat_stream(({"content": "a"}, None), extra=[(None, {"error": {"message": "x"}})]),
         "stream carries an error event"),
        (b"data: {not json\n\ndata: [DONE]\n\n", "stream has an event that is not JSON"),
        (b"", "stream ended before [DONE]"),
    ],
    ids=["complete", "no-done", "error-event", "garbage", "empty"],
)
def test_chat_stream_completeness(body, problem):
    assert openai_chat.stream_problem(body) == problem


MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
    "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20},
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "days": [1, 2]}},
        {"type": "tool_use", "id": "toolu_2", "name": "noargs", "input": {}},
    ],
}


def test_anthropic_synthesis_and_assembly_round_trip():
    stream = anthropic_messages.synthesise(MESSAGE)
    assert anthropic_messages.stream_problem(stream) is None
    names = [e.event for e in sse.iter_events(stream)]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert anthropic_messages.assemble(stream) == MESSAGE


def test_anthropic_assembly_ignores_pings_and_merges_usage():
    ping = b'event: ping\ndata: {"type":"ping"}\n\n'
    stream = anthropic_messages.synthesise(MESSAGE).replace(b"event: message_delta", ping + b"event: message_delta")
    assert anthropic_messages.assemble(stream)["usage"] == {"input_tokens": 10, "output_tokens": 20}


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda s: s, None),
        (lambda s: s[: s.index(b"event: message_stop")], "stream ended before message_stop"),
        (lambda s: s.replace(b"event: message_delta",
                             b'event: error\ndata: {"type":"error","error":{}}\n\nevent: message_delta'),
         "stream carries an error event"),
    ],
    ids=["complete", "cut", "error"],
)
def test_anthropic_stream_completeness(mutate, problem):
    assert anthropic_messages.stream_problem(mutate(anthropic_messages.synthesise(MESSAGE))) == problem


def responses_stream(*types):
    return sse.encode(
        (t, {"type": t, "sequence_number": i, "response": {"id": "resp_1", "output": [], "status": "completed"}})
        for i, t in enumerate(types)
    )


@pytest.mark.parametrize(
    "types, problem",
    [
        (("response.created", "response.completed"), None),
        (("response.created", "response.output_text.delta"), "stream ended before response.completed"),
        (("response.created", "response.failed"), "stream carries response.failed"),
        (("response.created", "response.incomplete"), "stream carries response.incomplete"),
        (("response.created", "error", "response.completed"), "stream carries error"),
    ],
)
def test_responses_stream_completeness(types, problem):
    assert formats.stream_problem(Family.OPENAI_RESPONSES, responses_stream(*types)) == problem


def test_responses_stream_to_json_is_the_completed_response():
    body = formats.stream_to_json(Family.OPENAI_RESPONSES, responses_stream("response.created", "response.completed"))
    assert orjson.loads(body) == {"id": "resp_1", "output": [], "status": "completed"}


@pytest.mark.parametrize(
    "family, body, problem",
    [
        (Family.OPENAI_CHAT, b'{"choices": []}', None),
        (Family.OPENAI_CHAT, b'{"error": {"message": "x"}, "choices": []}', "response carries an error"),
        (Family.OPENAI_CHAT, b'{"object": "list"}', "response has no 'choices'"),
        (Family.ANTHROPIC_MESSAGES, b'{"content": []}', None),
        (Family.OPENAI_EMBEDDINGS, b'{"data": []}', None),
        (Family.OPENAI_RESPONSES, b"<html>", "response is not JSON"),
    ],
)
def test_json_completeness(family, body, problem):
    assert formats.json_problem(family, body) == problem


def test_usage_from_json_and_streams():
    assert formats.usage_of(Family.OPENAI_CHAT, TOOL_STREAM, is_stream=True) == (3, 4)
    anthropic_stream = anthropic_messages.synthesise(MESSAGE)
    assert formats.usage_of(Family.ANTHROPIC_MESSAGES, anthropic_stream, is_stream=True) == (10, 20)
    responses_json = b'{"usage": {"input_tokens": 1, "output_tokens": 2}}'
    assert formats.usage_of(Family.OPENAI_RESPONSES, responses_json, is_stream=False) == (1, 2)
    assert formats.usage_of(Family.OPENAI_CHAT, b"garbage", is_stream=False) == (None, None)


# The fast path of the SSE parser against the full parse it stands in for: the parser as it was before
# the fast path, kept here as the oracle.

_ORACLE_BLOCKS = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_ORACLE_LINES = re.compile(rb"\r\n|\n|\r")


def oracle_events(body):
    events = []
    for block in _ORACLE_BLOCKS.split(body):
        name, data = None, []
        for line in _ORACLE_LINES.split(block):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"event":
                name = value.decode("utf-8", "replace")
            elif field == b"data":
                data.append(value.decode("utf-8", "replace"))
        if data:
            events.append(sse.Event(name, "\n".join(data)))
    return events


TRICKY_BODIES = {
    "lf": b'data: {"a":1}\n\nevent: e\ndata: {"b":2}\n\ndata: [DONE]\n\n',
    "crlf-only": b'data: {"a":1}\r\n\r\nevent: e\r\ndata: 2\r\n\r\n',
    "cr-only": b"data: 1\r\rdata: 2\r\r",
    "mixed-line-ends": b"data: 1\n\r\ndata: 2\r\n\ndata: 3\n\n",
    "comments": b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: 1\n\n:x\ndata: 2\n\n",
    "multi-line-data": b"data: 1\ndata: 2\n\nevent: e\ndata: a\ndata: b\n\n",
    "no-trailing-blank-line": b"data: 1\n\ndata: 2\n",
    "no-newline-at-all": b"data: 1",
    "event-without-data": b"event: ping\n\nevent: e\n\ndata: 1\n\n",
    "event-then-data-then-event": b"event: a\ndata: 1\nevent: b\n\n",
    "data-before-event": b"data: 1\nevent: late\n\n",
    "bom": b"\xef\xbb\xbfdata: 1\n\ndata: 2\n\n",
    "no-space": b"data:1\n\nevent:e\ndata:2\n\n",
    "two-spaces": b"data:  1\n\nevent:  e\ndata:  2\n\n",
    "empty-data": b"data:\n\ndata: \n\nevent: e\ndata: \n\n",
    "colons-in-values": b'event: a:b\ndata: {"u":"http://x"}\n\n',
    "empty-event-name": b"event: \ndata: 1\n\n",
    "id-retry-unknown": b"id: 7\ndata: 1\n\nretry: 10\n\nfoo: bar\ndata: 2\n\n",
    "extra-blank-lines": b"\n\n\ndata: 1\n\n\n\n\ndata: 2\n\n\n",
    "invalid-utf8": b'data: {"t":"\xff\xc3"}\n\nevent: \xe2\x82\ndata: \xed\xa0\x80\n\n',
    "non-ascii": 'data: {"t":"héllo 世界 🎉"}\n\nevent: é\ndata: ü\n\n'.encode(),
    "empty": b"",
    "blank-lines-only": b"\n\n\r\n\r\n",
    "data-field-prefix": b"datum: 1\n\ndata2: 3\n\nevents: x\ndata: 4\n\n",
}


@pytest.mark.parametrize("body", TRICKY_BODIES.values(), ids=TRICKY_BODIES.keys())
def test_sse_fast_path_parses_as_the_full_parse(body):
    assert list(sse.iter_events(body)) == oracle_events(body)
    assert list(sse.iter_events(body.replace(b"\n", b"\r\n"))) == oracle_events(body.replace(b"\n", b"\r\n"))


_FRAGMENTS = [b"data: ", b"data:", b"event: ", b"event:", b":", b" ", b"\n", b"\n\n", b"\r\n", b"\r",
              b'{"a":1}', b"[DONE]", b"x", b"id: 1", b"\xff", "é".encode(), b"\xef\xbb\xbf"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30))
def test_sse_fast_path_parses_any_body_as_the_full_parse(fragments):
    body = b"".join(fragments)
    assert list(sse.iter_events(body)) == oracle_events(body)


def oracle_json_events(body, done_marker=None):
    return [(e.event, e.data if e.data == done_marker else orjson.loads(e.data)) for e in oracle_events(body)]


@pytest.mark.parametrize("body", [
    b'data: {"t":"\xff"}\n\ndata: [DONE]\n\n',  # invalid UTF-8 is replaced, not refused
    'event: e\ndata: {"t":"日本"}\n\n: c\ndata: {"a":\ndata: 1}\n\n'.encode(),
    b'data: "[DONE]"\n\ndata: [DONE]\r\n\r\n',
])
def test_json_events_parse_as_the_full_parse(body):
    assert list(sse.json_events(body, done_marker="[DONE]")) == oracle_json_events(body, "[DONE]")


@pytest.mark.parametrize("body", [b"data: [DONE]\n\n", b"data: {\n\n", b'data: {"t":"\xff"\n\n',
                                  b"data: \xef\xbb\xbf{}\n\n"])
def test_json_events_refuse_what_the_full_parse_refuses(body):
    with pytest.raises(ValueError):
        oracle_json_events(body)
    with pytest.raises(ValueError):
        list(sse.json_events(body))


def test_pieces_join_once_in_place_and_as_adding_would():
    message = {"role": "assistant", "content": None}
    pieces = sse.Pieces()
    for piece in ("Hel", "lo"):
        pieces.add(message, "content", piece, none_is_empty=True)
    pieces.add(message, "reasoning", "r")
    pieces.add(message, "audio", "x")
    pieces.drop(message, "audio")
    message["audio"] = {"id": "a"}  # replaced whole, as the stream did
    pieces.finish()
    assert list(message.items()) == [("role", "assistant"), ("content", "Hello"), ("reasoning", "r"),
                                      ("audio", {"id": "a"})]
    partial = {}
    pieces.add(partial, 0, '{"a"')
    pieces.add(partial, 0, ": 1}")
    assert pieces.take(partial, 0) == '{"a": 1}' and partial == {}
    numbers = {"n": 1}
    pieces.add(numbers, "n", 2)  # not text: added there and then, as the stream's `+` would
    assert numbers == {"n": 3}
    with pytest.raises(TypeError):
        pieces.add(message, "content", 5)


def test_assembly_keeps_the_order_text_fields_first_came_in():
    body = chat_stream(({"role": "assistant", "content": None}, None), ({"reasoning_content": "th"}, None),
                       ({"content": "a"}, None), ({"reasoning_content": "ink"}, None), ({"refusal": None}, None),
                       ({"content": "b"}, "stop"))
    message = openai_chat.assemble(body)["choices"][0]["message"]
    assert list(message.items()) == [("role", "assistant"), ("content", "ab"), ("reasoning_content", "think")]


def test_usage_of_a_complete_but_malformed_stream_is_unknown():
    body = sse.encode([
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": "not an object"}),
        ("message_stop", {"type": "message_stop"}),
    ])
    assert formats.stream_problem(Family.ANTHROPIC_MESSAGES, body) is None
    assert formats.usage_of(Family.ANTHROPIC_MESSAGES, body, is_stream=True) == (None, None)


def test_completions_stream_that_turns_chat_shaped_is_assembled_as_chat():
    text_chunk = {"id": "c", "object": "text_completion", "choices": [{"text": "a", "index": 0}]}
    chat_chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]}
    body = sse.encode([(None, text_chunk), (None, chat_chunk), (None, "[DONE]")])
    assert openai_completions.assemble(body) == openai_chat.assemble(body)
    assert openai_completions.assemble(body)["choices"][0]["message"]["content"] == "b"
