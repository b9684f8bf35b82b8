import orjson
import pytest

from llm_cache import anthropic_messages, formats, openai_chat, sse
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
