"""Recognition, keys and stream formats of the protocols beyond OpenAI chat and Anthropic: Responses,
legacy completions and FIM, Gemini, Ollama, Azure, Bedrock, and the OpenAI-compatible quirks."""

import orjson
import pytest

from llm_cache import answers, formats, gemini, keys, ollama, openai_chat, openai_completions, openai_responses, sse
from llm_cache.endpoints import Family, Route, Wire, is_websocket_upgrade, route_for
from llm_cache.records import Record

GEMINI = "/v1beta/models/gemini-2.5-flash"
VERTEX = "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro"


@pytest.mark.parametrize("path, route", [
    (f"{GEMINI}:generateContent", Route(Family.GEMINI_GENERATE, "gemini-2.5-flash", False, Wire.JSON_ARRAY)),
    (f"{GEMINI}:streamGenerateContent?alt=sse", Route(Family.GEMINI_GENERATE, "gemini-2.5-flash", True, Wire.SSE)),
    (f"{GEMINI}:streamGenerateContent?key=k", Route(Family.GEMINI_GENERATE, "gemini-2.5-flash", True,
                                                    Wire.JSON_ARRAY)),
    (f"{VERTEX}:generateContent", Route(Family.GEMINI_GENERATE, "gemini-2.5-pro", False, Wire.JSON_ARRAY)),
    ("/v1internal:streamGenerateContent?alt=sse", Route(Family.GEMINI_GENERATE, None, True, Wire.SSE)),
    (f"{GEMINI}:embedContent", Route(Family.GEMINI_EMBED, "gemini-2.5-flash", False)),
    (f"{GEMINI}:countTokens", None),
    ("/v1internal:loadCodeAssist", None),
    ("/api/chat", Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON)),
    ("/api/generate", Route(Family.OLLAMA_GENERATE, stream_wire=Wire.NDJSON)),
    ("/api/embed", Route(Family.OLLAMA_EMBED, stream_wire=Wire.NDJSON)),
    ("/api/embeddings", Route(Family.OLLAMA_EMBED, stream_wire=Wire.NDJSON)),
    ("/api/tags", None),
    ("/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", Route(Family.OPENAI_CHAT, "gpt4o-prod")),
    ("/openai/deployments/emb/embeddings?api-version=2024-10-21", Route(Family.OPENAI_EMBEDDINGS, "emb")),
    ("/openai/v1/responses", Route(Family.OPENAI_RESPONSES)),
    ("/backend-api/codex/responses", Route(Family.OPENAI_RESPONSES)),
    ("/v1/fim/completions", Route(Family.OPENAI_COMPLETIONS)),
    ("/model/anthropic.claude-3-5-sonnet-v2:0/converse", Route(Family.BEDROCK, "anthropic.claude-3-5-sonnet-v2:0")),
    ("/model/amazon.nova-pro-v1:0/invoke-with-response-stream", Route(Family.BEDROCK, "amazon.nova-pro-v1:0")),
])
def test_routes(path, route):
    assert route_for("POST", path, "application/json") == route


@pytest.mark.parametrize("route, body, model, stream", [
    (Route(Family.GEMINI_GENERATE, "gemini-2.5-flash", True, Wire.SSE), {"contents": []}, "gemini-2.5-flash", True),
    (Route(Family.GEMINI_GENERATE, None, False), {"model": "gemini-2.5-pro", "request": {"contents": []}},
     "gemini-2.5-pro", False),
    (Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON), {"model": "llama3.2", "messages": []}, "llama3.2", True),
    (Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON), {"model": "llama3.2", "messages": [], "stream": False},
     "llama3.2", False),
    (Route(Family.OPENAI_CHAT, "gpt4o-prod"), {"messages": []}, "gpt4o-prod", False),
    (Route(Family.OPENAI_CHAT, "gpt4o-prod"), {"model": "gpt-4o", "messages": []}, "gpt-4o", False),
])
def test_model_and_stream_come_from_the_path_or_the_body(route, body, model, stream):
    facts = keys.body_facts(route, body)
    assert facts is not None and (facts.model, facts.stream) == (model, stream)


@pytest.mark.parametrize("route, body", [
    (Route(Family.GEMINI_GENERATE, "g", False), {"contents": "hi"}),
    (Route(Family.GEMINI_GENERATE, None, False), {"request": {"contents": []}}),  # v1internal without a model
    (Route(Family.OLLAMA_GENERATE), {"model": "llama3.2"}),  # a load request: nothing to cache
    (Route(Family.OPENAI_CHAT), {"messages": []}),  # no model, no deployment
])
def test_bodies_that_are_not_the_call_their_path_says(route, body):
    assert keys.body_facts(route, body) is None


def key(path: str, body: dict, query=()) -> str:
    route = route_for("POST", path, "application/json")
    facts = keys.body_facts(route, body)
    target = keys.make_target("POST", "https", "generativelanguage.googleapis.com", 443, path, query, ())
    return keys.cache_key(target, facts.digest)


def test_gemini_json_and_stream_share_a_key_and_the_api_key_is_not_in_it():
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    plain = key(f"{GEMINI}:generateContent", body, [("key", "AIza1")])
    assert plain == key(f"{GEMINI}:streamGenerateContent?alt=sse", body, [("alt", "sse"), ("key", "AIza2")])
    assert plain == key(f"{GEMINI}:streamGenerateContent", body)
    assert plain != key("/v1beta/models/gemini-2.5-pro:generateContent", body)


def test_volatile_ids_of_the_gemini_cli_and_ollama_keep_alive_are_not_keyed():
    def cli(prompt_id: str) -> dict:
        return {"model": "m", "project": "p", "user_prompt_id": prompt_id,
                "request": {"contents": [], "session_id": prompt_id}}

    route = Route(Family.GEMINI_GENERATE, None, False)
    assert keys.body_facts(route, cli("a")).digest == keys.body_facts(route, cli("b")).digest
    chat = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    ollama_route = Route(Family.OLLAMA_CHAT, stream_wire=Wire.NDJSON)
    assert keys.body_facts(ollama_route, chat).digest == keys.body_facts(
        ollama_route, {**chat, "keep_alive": "10m", "stream": False}).digest


def test_websocket_upgrades_of_responses_endpoints():
    assert is_websocket_upgrade("GET", "/backend-api/codex/responses", "websocket")
    assert is_websocket_upgrade("GET", "/v1/responses?x=1", "WebSocket")
    assert not is_websocket_upgrade("GET", "/v1/realtime", "websocket")
    assert not is_websocket_upgrade("POST", "/v1/responses", "")


# -- Responses --------------------------------------------------------------------------------

RESPONSE = {
    "id": "resp_1", "object": "response", "status": "completed", "model": "m",
    "output": [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan."}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "call_1", "name": "f",
         "arguments": '{"x": 1}'},
        {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": [{"type": "url_citation"}]},
                     {"type": "refusal", "refusal": "No."}]},
        {"id": "ws_1", "type": "web_search_call", "status": "completed"},
    ],
    "usage": {"input_tokens": 1, "output_tokens": 2},
}


def test_responses_synthesis_round_trips_with_ordered_sequence_numbers():
    stream = openai_responses.synthesise(RESPONSE)
    assert openai_responses.stream_problem(stream) is None
    assert openai_responses.assemble(stream) == RESPONSE
    events = [(name, data) for name, data in sse.json_events(stream)]
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = {name: data.get("delta") for name, data in events if name.endswith(".delta")}
    assert deltas == {"response.reasoning_summary_text.delta": "Plan.",
                      "response.function_call_arguments.delta": '{"x": 1}',
                      "response.output_text.delta": "Hello", "response.refusal.delta": "No."}


@pytest.mark.parametrize("status", ["failed", "incomplete", "in_progress"])
def test_responses_that_did_not_complete_are_not_stored(status):
    body = orjson.dumps({**RESPONSE, "status": status})
    assert formats.json_problem(Family.OPENAI_RESPONSES, body) == f"response status is {status}"


# -- Legacy completions and FIM ---------------------------------------------------------------

TEXT_COMPLETION = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                   "choices": [{"text": "Hello there", "index": 0, "logprobs": None, "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}


@pytest.mark.parametrize("include_usage", [True, False])
def test_text_completion_synthesis_round_trips(include_usage):
    stream = openai_completions.synthesise(TEXT_COMPLETION, include_usage=include_usage)
    assert openai_chat.stream_problem(stream) is None
    expected = dict(TEXT_COMPLETION) if include_usage else {k: v for k, v in TEXT_COMPLETION.items() if k != "usage"}
    assert openai_completions.assemble(stream) == expected


def test_chat_shaped_fim_answers_are_handled_as_chat():
    fim = {"id": "f1", "object": "chat.completion", "created": 1, "model": "codestral",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "x + 1"}, "logprobs": None,
                        "finish_reason": "stop"}]}
    stream = openai_completions.synthesise(fim, include_usage=False)
    assert b"chat.completion.chunk" in stream
    assert openai_completions.assemble(stream)["choices"] == fim["choices"]


# -- OpenAI-compatible quirks -----------------------------------------------------------------

def chunk(delta: dict, finish: str | None = None, **extra) -> tuple[None, dict]:
    return None, {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


AZURE_FILTER = (None, {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                       "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})


@pytest.mark.parametrize("events, problem", [
    ([AZURE_FILTER, chunk({"content": "hi"}), chunk({}, "stop"), (None, "[DONE]")], None),
    ([chunk({"content": "hi"}), chunk({}, "stop")], None),  # no [DONE], every choice finished
    ([chunk({"content": "hi"})], "stream ended before [DONE]"),
    ([chunk({"content": "hi"}), chunk({"content": ""}, "error", error={"code": 502, "message": "gone"}),
      (None, "[DONE]")], "stream carries an error event"),
    ([chunk({"content": "hi"}), chunk({"content": ""}, "error"), (None, "[DONE]")], "stream carries an error event"),
], ids=["azure-filter-chunk", "no-done", "cut", "openrouter-error-chunk", "finish-error"])
def test_chat_stream_quirks(events, problem):
    body = b": OPENROUTER PROCESSING\n\n" + sse.encode(events)
    assert openai_chat.stream_problem(body) == problem
    if problem is None:
        assert openai_chat.assemble(body)["choices"][0]["message"]["content"] == "hi"
        assert openai_chat.assemble(body)["id"] == "c"


# -- Gemini -----------------------------------------------------------------------------------

def gemini_chunk(parts: list, finish: str | None = None) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3},
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"}


GEMINI_STREAM = sse.encode([
    (None, gemini_chunk([{"text": "Let me", "thought": True}])),
    (None, gemini_chunk([{"text": " think.", "thought": True}])),
    (None, gemini_chunk([{"text": "Hel"}])),
    (None, gemini_chunk([{"text": "lo", "thoughtSignature": "sig"}])),
    (None, gemini_chunk([{"functionCall": {"name": "f", "args": {"x": 1}}}], "STOP")),
])


def test_gemini_assembly_joins_text_of_the_same_kind_and_keeps_calls():
    response = gemini.assemble(GEMINI_STREAM)
    assert response["candidates"] == [{
        "content": {"role": "model", "parts": [{"text": "Let me think.", "thought": True},
                                               {"text": "Hello", "thoughtSignature": "sig"},
                                               {"functionCall": {"name": "f", "args": {"x": 1}}}]},
        "index": 0, "finishReason": "STOP"}]
    assert response["usageMetadata"]["candidatesTokenCount"] == 3
    assert formats.usage_of(Family.GEMINI_GENERATE, GEMINI_STREAM, is_stream=True) == formats.Usage(2, 3)


def test_gemini_wrapped_payloads_stay_wrapped():
    wrapped = sse.encode([(None, {"response": gemini_chunk([{"text": "a"}]), "traceId": "t"}),
                          (None, {"response": gemini_chunk([{"text": "b"}], "STOP"), "traceId": "t"})])
    assert gemini.stream_problem(wrapped) is None
    whole = gemini.assemble(wrapped)
    assert whole["traceId"] == "t" and whole["response"]["candidates"][0]["content"]["parts"] == [{"text": "ab"}]
    assert gemini.assemble(gemini.synthesise(whole)) == whole


@pytest.mark.parametrize("body, problem", [
    (GEMINI_STREAM, None),
    (sse.encode([(None, gemini_chunk([{"text": "a"}]))]), "stream ended before finishReason"),
    (sse.encode([(None, gemini_chunk([{"text": "a"}])), (None, {"error": {"code": 503}})]),
     "stream carries an error"),
    (b"", "stream ended before finishReason"),
])
def test_gemini_stream_completeness(body, problem):
    assert gemini.stream_problem(body) == problem


def test_gemini_json_array_and_sse_framings_convert_both_ways():
    array = gemini.sse_to_array(GEMINI_STREAM)
    assert [c["responseId"] for c in orjson.loads(array)] == ["r1"] * 5
    assert gemini.array_to_sse(array) == GEMINI_STREAM
    with pytest.raises(ValueError):
        gemini.array_to_sse(array[:-1])  # a cut array is not a stream to store
    record = Record(key="k", status=200, headers=[("content-type", "text/event-stream")], body=GEMINI_STREAM,
                    is_stream=True, created_at=0)
    as_array = answers.replay(record, Family.GEMINI_GENERATE, want=Wire.JSON_ARRAY, include_usage=False)
    assert orjson.loads(as_array.body) == orjson.loads(array)
    assert dict(as_array.headers)["content-type"].startswith("application/json")


def test_a_blocked_gemini_prompt_is_not_stored():
    blocked = orjson.dumps({"promptFeedback": {"blockReason": "SAFETY"}})
    assert formats.json_problem(Family.GEMINI_GENERATE, blocked) == "response has no candidates"


# -- Ollama -----------------------------------------------------------------------------------

OLLAMA_CHAT = ollama.encode([
    {"model": "llama3.2", "created_at": "t1", "message": {"role": "assistant", "content": "Hel", "thinking": "hm"},
     "done": False},
    {"model": "llama3.2", "created_at": "t2", "message": {"role": "assistant", "content": "lo",
                                                          "tool_calls": [{"function": {"name": "f"}}]},
     "done": False},
    {"model": "llama3.2", "created_at": "t3", "message": {"role": "assistant", "content": ""}, "done": True,
     "done_reason": "stop", "total_duration": 99, "prompt_eval_count": 4, "eval_count": 2},
])


def test_ollama_chat_assembly_and_synthesis_round_trip():
    whole = ollama.assemble(OLLAMA_CHAT)
    assert whole["message"] == {"role": "assistant", "content": "Hello", "thinking": "hm",
                                "tool_calls": [{"function": {"name": "f"}}]}
    assert (whole["done"], whole["eval_count"], whole["created_at"]) == (True, 2, "t3")
    again = ollama.synthesise(whole)
    assert ollama.stream_problem(again) is None and ollama.assemble(again) == whole
    assert formats.usage_of(Family.OLLAMA_CHAT, OLLAMA_CHAT, is_stream=True) == formats.Usage(4, 2)


def test_ollama_generate_round_trip_keeps_the_context():
    whole = {"model": "m", "created_at": "t", "response": "Hi there", "done": True, "context": [1, 2],
             "eval_count": 3}
    stream = ollama.synthesise(whole)
    lines = list(ollama.lines(stream))
    assert lines[0]["response"] == "Hi there" and lines[-1]["done"] is True and lines[-1]["response"] == ""
    assert ollama.assemble(stream) == whole


@pytest.mark.parametrize("body, problem", [
    (OLLAMA_CHAT, None),
    (OLLAMA_CHAT.rsplit(b"\n", 2)[0] + b"\n", 'stream ended before "done": true'),
    (b'{"model": "m", "done": false}\n{"error": "model runner has unexpectedly stopped"}\n',
     "stream carries an error"),
    (b'{"model": "m", "done": tr', "stream has a line that is not JSON"),
])
def test_ollama_stream_completeness(body, problem):
    assert ollama.stream_problem(body) == problem


@pytest.mark.parametrize("family, body, problem", [
    (Family.OLLAMA_CHAT, {"message": {"content": "x"}, "done": True}, None),
    (Family.OLLAMA_CHAT, {"message": {"content": "x"}, "done": False}, "response is not done"),
    (Family.OLLAMA_GENERATE, {"error": "no such model"}, "response carries an error"),
    (Family.OLLAMA_EMBED, {"embeddings": [[0.1]]}, None),
    (Family.OLLAMA_EMBED, {"embedding": [0.1]}, None),
    (Family.GEMINI_EMBED, {"embedding": {"values": [0.1]}}, None),
    (Family.BEDROCK, {"output": {}}, "Bedrock calls are not cached"),
])
def test_json_completeness_per_family(family, body, problem):
    assert formats.json_problem(family, orjson.dumps(body)) == problem


def test_an_ndjson_answer_is_stored_and_replayed_as_ndjson():
    headers, body = answers.framed_for_storage(Family.OLLAMA_CHAT, Wire.NDJSON,
                                               [("content-type", "application/x-ndjson")], OLLAMA_CHAT)
    record = Record(key="k", status=200, headers=headers, body=body, is_stream=True, created_at=0)
    same = answers.replay(record, Family.OLLAMA_CHAT, want=Wire.NDJSON, include_usage=False)
    assert same.body == OLLAMA_CHAT
    as_json = answers.replay(record, Family.OLLAMA_CHAT, want=Wire.JSON, include_usage=False)
    assert orjson.loads(as_json.body)["message"]["content"] == "Hello"
    assert answers.wire_of("application/x-ndjson", requested=Wire.NDJSON) is Wire.NDJSON
    assert answers.wire_of("application/json", requested=Wire.JSON_ARRAY) is Wire.JSON_ARRAY
