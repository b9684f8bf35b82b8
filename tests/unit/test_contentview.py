"""The "LLM" content view through mitmproxy's own contentview API, as mitmweb calls it."""

import orjson
import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from llm_cache import anthropic_messages, ollama, sse
from llm_cache.contentview import PRIORITY, LLMContentview
from llm_cache.flowstate import META
from llm_cache.status import Status

VIEW = LLMContentview()
JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"


@pytest.fixture(autouse=True)
def registered():
    contentviews.add(VIEW)  # as the addon's load() does
    with taddons.context():  # mitmproxy's metadata reads an option
        yield


def flow(path: str, body: dict | bytes, answer: bytes | None = None, content_type: str = JSON,
         method: str = "POST", state: dict | None = None, status: int = 200) -> http.HTTPFlow:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    request = tutils.treq(method=method.encode(), path=path.encode(), content=content,
                          headers=http.Headers(content_type="application/json"))
    response: http.Response | bool = False
    if answer is not None:
        response = tutils.tresp(status_code=status, content=answer, headers=http.Headers(content_type=content_type))
    f = tflow.tflow(req=request, resp=response)
    if state is not None:
        f.metadata[META] = state
    return f


def shown(f: http.HTTPFlow, message: str = "response", view: str = "auto") -> str:
    result = contentviews.prettify_message(getattr(f, message), f, view_name=view)
    assert result.view_name == "LLM", result.text
    return result.text


def lines(text: str) -> list[str]:
    return text.splitlines()


CHAT_REQUEST = {
    "model": "gpt-4o-mini", "stream": True,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21°C, sunny"},
    ],
}


def test_an_openai_chat_request_shows_model_tools_and_each_turn_with_its_role():
    text = shown(flow("/v1/chat/completions", CHAT_REQUEST), "request")
    assert lines(text) == [
        "openai.chat · model gpt-4o-mini · stream",
        "",
        "tools: get_weather",
        "[system]", "  You are terse.",
        "[user]", "  Weather in Paris?",
        "[assistant]", '  → get_weather({"city":"Paris"})',
        "[tool (call_1)]", "  21°C, sunny",
    ]


def chat_chunk(delta: dict, finish: str | None = None) -> tuple[None, dict]:
    return None, {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


CHAT_STREAM = sse.encode([
    chat_chunk({"role": "assistant", "content": ""}), chat_chunk({"content": "It is "}),
    chat_chunk({"content": "21°C."}), chat_chunk({}, "stop"),
    (None, {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
            "usage": {"prompt_tokens": 30, "completion_tokens": 5}}),
    (None, "[DONE]"),
])


def test_a_chat_stream_is_shown_assembled_with_the_cache_outcome():
    state = {"status": Status.MISS, "store": "stored", "request_key": "3c5f894ad874" + "0" * 52,
             "entry_key": "3c5f894ad874" + "0" * 52, "model": "gpt-4o-mini"}
    text = shown(flow("/v1/chat/completions", CHAT_REQUEST, CHAT_STREAM, SSE, state=state))
    assert lines(text) == [
        "llm-cache: MISS · stored",
        "key: 3c5f894ad874" + "0" * 52,
        "",
        "openai.chat · model gpt-4o-mini · assembled from an SSE stream of 6 events",
        "finish: stop",
        "usage: 30 input · 5 output tokens",
        "",
        "[assistant]", "  It is 21°C.",
    ]


def test_a_json_hit_shows_hit_and_its_key():
    answer = {"id": "c", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    state = {"status": Status.HIT, "request_key": "abc123", "entry_key": "abc123"}
    text = shown(flow("/v1/chat/completions", {**CHAT_REQUEST, "stream": False}, orjson.dumps(answer), state=state))
    assert lines(text)[:5] == ["llm-cache: HIT", "key: abc123", "",
                               "openai.chat · model gpt-4o-mini-2024-07-18 · JSON", "finish: stop"]
    assert lines(text)[-2:] == ["[assistant]", "  Hi!"]


@pytest.mark.parametrize("state, first", [
    ({"status": Status.BYPASS, "reason": "X-Cache-Bypass: true"}, "llm-cache: BYPASS · X-Cache-Bypass: true"),
    ({"status": Status.REPLAY_MISS, "reason": "llm_cache_mode is replay", "request_key": "k"},
     "llm-cache: REPLAY_MISS · llm_cache_mode is replay"),
    ({"status": Status.MISS, "store": "skipped: upstream status 500", "request_key": "k", "entry_key": "k"},
     "llm-cache: MISS · skipped: upstream status 500"),
    ({"status": "HIT", "request_key": "k", "entry_key": "k2", "sample": 1}, "llm-cache: HIT"),  # a loaded flow
    ({}, "openai.chat · model gpt-4o-mini · JSON"),  # mitmdump without the addon: no outcome to show
])
def test_every_cache_outcome_leads_the_answer(state, first):
    error = orjson.dumps({"error": {"message": "nope"}})
    text = shown(flow("/v1/chat/completions", CHAT_REQUEST, error, state=state, status=500))
    assert lines(text)[0] == first
    assert "HTTP 500" in lines(text) and '    "message": "nope"' in lines(text)
    if state.get("entry_key") == "k2":
        assert "entry: k2 (sample 1)" in lines(text)


def test_a_responses_stream_shows_its_instructions_and_assembled_output():
    request = {"model": "gpt-5", "stream": True, "instructions": "Be brief.", "tools": [{"type": "function",
               "name": "lookup"}], "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                                             {"type": "function_call_output", "call_id": "x", "output": "42"}]}
    response = {"id": "resp_1", "model": "gpt-5", "status": "completed", "usage": {"input_tokens": 8,
                "output_tokens": 3}, "output": [
        {"type": "reasoning", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello there"}]},
        {"type": "function_call", "name": "lookup", "arguments": '{"q":1}', "call_id": "y"}]}
    events = [("response.created", {"type": "response.created", "response": {**response, "output": [],
                                                                             "status": "in_progress"}}),
              ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hello there"}),
              ("response.completed", {"type": "response.completed", "response": response})]
    f = flow("/v1/responses", request, sse.encode(events), SSE)
    assert lines(shown(f, "request")) == [
        "openai.responses · model gpt-5 · stream", "", "[system]", "  Be brief.", "tools: lookup",
        "[user]", "  hi", "[tool]", "  ← 42"]
    assert lines(shown(f)) == [
        "openai.responses · model gpt-5 · assembled from an SSE stream of 3 events",
        "finish: completed", "usage: 8 input · 3 output tokens", "",
        "[reasoning]", "  ", "[assistant]", "  Hello there", "[assistant]", '  → lookup({"q":1})']


def test_an_anthropic_stream_with_a_tool_use():
    request = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
               "system": [{"type": "text", "text": "Use tools."}], "tools": [{"name": "weather"}],
               "messages": [{"role": "user", "content": "Paris?"},
                            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather",
                                                               "input": {"city": "Paris"}}]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                          "content": "sunny"}]}]}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 20},
               "content": [{"type": "text", "text": "Checking again."},
                           {"type": "tool_use", "id": "t2", "name": "weather", "input": {"city": "Lyon"}}]}
    f = flow("/v1/messages?beta=true", request, anthropic_messages.synthesise(message), SSE)
    assert lines(shown(f, "request"))[2:] == [
        "[system]", "  Use tools.", "tools: weather", "[user]", "  Paris?",
        "[assistant]", '  → weather({"city": "Paris"})', "[user]", "  ← sunny"]
    text = lines(shown(f))
    assert text[0].startswith("anthropic.messages · model claude-sonnet-4-5 · assembled from an SSE stream of ")
    assert text[1:] == ["finish: tool_use", "usage: 10 input · 20 output tokens", "",
                        "[assistant]", "  Checking again.", '  → weather({"city": "Lyon"})']


def gemini_chunk(parts: list, finish: str | None = None) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3},
            "modelVersion": "gemini-2.5-flash"}


GEMINI_CHUNKS = [gemini_chunk([{"text": "Hel"}]), gemini_chunk([{"text": "lo"}]),
                 gemini_chunk([{"functionCall": {"name": "f", "args": {"x": 1}}}], "STOP")]
GEMINI_REQUEST = {"systemInstruction": {"parts": [{"text": "Be kind."}]},
                  "tools": [{"functionDeclarations": [{"name": "f"}]}],
                  "contents": [{"role": "user", "parts": [{"text": "hi"}]},
                               {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                               {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"ok": 1}}}]}]}


@pytest.mark.parametrize("query, answer, content_type, framing", [
    ("?alt=sse", sse.encode((None, chunk) for chunk in GEMINI_CHUNKS), SSE, "an SSE stream of 3 events"),
    ("", orjson.dumps(GEMINI_CHUNKS), JSON, "a JSON-array stream of 3 chunks"),
])
def test_a_gemini_stream_in_either_framing(query, answer, content_type, framing):
    f = flow(f"/v1beta/models/gemini-2.5-flash:streamGenerateContent{query}", GEMINI_REQUEST, answer, content_type)
    assert lines(shown(f, "request")) == [
        "gemini.generate · model gemini-2.5-flash · stream", "", "[system]", "  Be kind.", "tools: f",
        "[user]", "  hi", "[model]", "  → f({})", "[user]", '  ← f: {"ok": 1}']
    assert lines(shown(f)) == [
        f"gemini.generate · model gemini-2.5-flash · assembled from {framing}", "finish: STOP",
        "usage: 2 input · 3 output tokens", "", "[model]", "  Hello", '  → f({"x": 1})']


def test_an_ollama_ndjson_stream():
    stream = ollama.encode([
        {"model": "llama3.2", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
         "prompt_eval_count": 4, "eval_count": 2}])
    f = flow("/api/chat", {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}, stream,
             "application/x-ndjson")
    assert lines(shown(f, "request")) == ["ollama.chat · model llama3.2 · stream", "", "[user]", "  hi"]
    assert lines(shown(f)) == [
        "ollama.chat · model llama3.2 · assembled from an NDJSON stream of 3 lines", "finish: stop",
        "usage: 4 input · 2 output tokens", "", "[assistant]", "  Hello"]


def test_embeddings_show_their_shape_not_their_numbers():
    answer = {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 3},
              "data": [{"embedding": [0.1] * 1536}, {"embedding": [0.2] * 1536}]}
    f = flow("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]}, orjson.dumps(answer))
    assert lines(shown(f))[-1] == "2 embeddings of 1536 dimensions"


@pytest.mark.parametrize("f", [
    flow("/v1/models", b"", b'{"data": []}', method="GET"),  # not an LLM endpoint
    flow("/index.html", b"<html>", b"<html></html>", "text/html"),
    flow("/v1/chat/completions", {"messages": "not a list"}, b"{}"),  # the path says chat, the body does not
    flow("/v1/chat/completions", b"not json", b"{}"),
], ids=["get", "html", "shape", "not-json"])
def test_other_traffic_is_never_claimed(f):
    for message in (f.request, f.response):
        assert priority(f, message) == 0
        assert contentviews.prettify_message(message, f).view_name != "LLM"


def priority(f: http.HTTPFlow, message: http.Message) -> float:
    content_type = message.headers.get("content-type", "").split(";")[0]
    return VIEW.render_priority(message.content or b"", contentviews.Metadata(flow=f, http_message=message,
                                                                             content_type=content_type))


def test_recognised_calls_are_the_view_s_by_default_except_for_bodies_it_does_not_read():
    f = flow("/v1/chat/completions", CHAT_REQUEST, CHAT_STREAM, SSE)
    assert priority(f, f.request) == priority(f, f.response) == PRIORITY > 1  # built-in views stay within 0..1
    bedrock = flow("/model/amazon.nova-pro-v1:0/invoke-with-response-stream", {"messages": []}, b"\x00\x01",
                   "application/vnd.amazon.eventstream")
    assert priority(bedrock, bedrock.request) == PRIORITY
    assert priority(bedrock, bedrock.response) == 0  # a binary event stream: left to mitmproxy's views


@pytest.mark.parametrize("answer, content_type, note", [
    (b"data: {not json\n\n", SSE, "(the answer is neither a JSON object nor a stream of JSON events)"),
    (b"<html>502 Bad Gateway</html>", "text/html", "(the answer is neither a JSON object nor a stream of JSON"),
    (b"[1, 2]", JSON, "(the answer is JSON but not an object: list)"),
    (b"\xff\xfe garbage", "text/plain", "(the answer is neither a JSON object"),
])
def test_a_body_it_cannot_read_falls_back_to_a_note_and_the_raw_text(answer, content_type, note):
    f = flow("/v1/chat/completions", CHAT_REQUEST, answer, content_type,
             state={"status": Status.MISS, "store": "skipped: stream ended early", "request_key": "k"})
    for view in ("auto", "llm"):
        result = contentviews.prettify_message(f.response, f, view_name=view)
        assert result.view_name == "LLM", result.text
        assert result.text.startswith("llm-cache: MISS · skipped: stream ended early")
        assert note in result.text and answer.decode("utf-8", "replace") in result.text


def test_chosen_by_hand_on_other_traffic_it_says_why_and_shows_the_raw_text():
    f = flow("/v1/chat/completions", b"{broken", b"{}")
    result = contentviews.prettify_message(f.request, f, view_name="llm")
    assert result.text == "(the request body is not JSON of a openai.chat call)\n\n{broken"
    other = flow("/index.html", b"hello", b"world", "text/plain")
    assert contentviews.prettify_message(other.response, other, view_name="llm").text.startswith(
        "(not an LLM call llm-cache recognises: POST /index.html)")


def test_a_stream_whose_body_was_not_kept():
    f = flow("/v1/chat/completions", CHAT_REQUEST, b"", SSE, state={"status": Status.BYPASS, "reason": "mode off"})
    assert lines(shown(f)) == ["llm-cache: BYPASS · mode off", "",
                               "(no body: mitmproxy keeps no streamed body, and llm-cache gives the flow only the "
                               "plain-text streams it records; or the stream is still running)"]
    f = flow("/v1/chat/completions", {**CHAT_REQUEST, "stream": False}, b"", JSON, state={})
    assert lines(shown(f)) == ["(empty body)"]
