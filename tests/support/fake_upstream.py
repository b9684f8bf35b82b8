"""A local stand-in for OpenAI- and Anthropic-style providers, for tests and the benchmark.

    python tests/support/fake_upstream.py --cert CERT.pem --key KEY.pem

prints one JSON line {"http": PORT, "https": PORT} once both listeners (127.0.0.1, port 0) are up.
Every answer carries a call counter ("call #N") so a test can tell a replay from a fresh call.
The model name picks a behaviour:

    fake-500            HTTP 500 with an error body
    fake-truncate       a stream cut off mid-way (the connection drops inside a chunked body)
    fake-cut            a stream that ends cleanly but before its terminal event
    fake-error-event    a stream with an in-stream error event
    fake-gzip           gzip-compressed answers (streams compressed chunk by chunk)
    fake-bomb           a JSON answer whose gzip body inflates to 1 GiB
    fake-tools          the answer is a tool call
    fake-slow           a stream whose events are 300 ms apart; a JSON answer after a second
    fake-huge           (chat) a ~50 MB stream: 25,000 deltas of 2,000 characters
    fake-reasoning      (Responses) a reasoning summary before the text
    fake-openrouter     (chat) SSE comment lines inside the stream, as OpenRouter sends
    fake-midstream-error (chat) OpenRouter's error chunk with finish_reason "error"
    fake-azure          (chat) Azure's leading prompt_filter_results chunk
    fake-no-done        (chat) a complete stream without the final [DONE]

Gemini, Ollama and Bedrock paths are answered by fake_protocols.py.

GET /__calls -> {"total": N, "paths": {path: N}, "posts": {path: N}}; POST /__reset zeroes the counters.
GET /__last -> the last POST as received: {"path", "headers", "body"}.
POST /__fail {"status": N} -> every later call is answered with HTTP N, until {"status": 0}.
"""

import argparse
import gzip
import itertools
import json
import ssl
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import bombs  # this file runs as a script: its folder is on sys.path
import fake_agent
import fake_protocols
from fake_protocols import pieces

_lock = threading.Lock()
_calls: dict[str, Any] = {"total": 0, "paths": {}, "posts": {}}
_last: dict[str, Any] = {}
_fail = {"status": 0}


def _count(path: str, method: str = "GET") -> int:
    with _lock:
        _calls["total"] += 1
        _calls["paths"][path] = _calls["paths"].get(path, 0) + 1
        if method == "POST":
            _calls["posts"][path] = _calls["posts"].get(path, 0) + 1
        return _calls["total"]


def _last_text(body: dict) -> str:
    """The text of the last message (of chat, Anthropic or Responses input), or the prompt."""
    turns = body.get("input") if isinstance(body.get("input"), list) else body.get("messages")
    messages = [m for m in turns or () if isinstance(m, dict) and "role" in m]
    if messages:
        content = messages[-1].get("content")
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(content)
    return str(body.get("prompt") or body.get("input") or "")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.startswith("/__calls"):
            with _lock:
                return self._json(200, dict(_calls))
        if self.path.startswith("/__last"):
            with _lock:
                return self._json(200, dict(_last))
        n = _count(self.path)
        if self.path.startswith("/api/claude_code/policy_limits"):  # Claude Code retries anything but JSON
            return self._json(200, {"restrictions": {}})
        self._send(200, f"plain page #{n}".encode(), "text/plain")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/__reset":
            with _lock:
                _calls.update(total=0, paths={}, posts={})
            return self._json(200, {})
        if self.path == "/__fail":
            _fail["status"] = json.loads(raw)["status"]
            return self._json(200, {})
        if self.headers.get("content-encoding") == "gzip":  # within 64 MB: the tests send bombs too
            raw = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(raw, 64 << 20)
        n = _count(self.path.split("?")[0], "POST")
        with _lock:
            _last.update(path=self.path, headers=dict(self.headers.items()), body=raw.decode(errors="replace"))
        if _fail["status"]:
            return self._json(_fail["status"], {"error": {"message": f"failing on purpose (call #{n})"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(200, f"non-json post #{n}".encode(), "text/plain")
        model = body.get("model", "")
        self.gzip = model == "fake-gzip" and "gzip" in self.headers.get("accept-encoding", "")
        if model == "fake-500":
            return self._json(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
        if model == "fake-bomb":  # a JSON answer that gzip-inflates to 1 GiB
            return self._send(200, bombs.bomb("gzip"), "application/json", encoding="gzip")
        path, _, query = self.path.partition("?")
        text = f"call #{n}: {_last_text(body)}" if model != "fake-no-answer" else "NO ANSWER"
        turn = fake_agent.scripted_turn(body)  # a real agent's tool session
        if turn is not None and turn.text is not None:
            text = turn.text
        call = turn.call if turn is not None else None
        if ":" in path or path.endswith(("/api/chat", "/api/generate", "/api/embed", "/api/embeddings")) \
                or "/model/" in path:
            answer = fake_protocols.answer(path, query, body, text, n, call)
            if isinstance(answer, fake_protocols.Stream):
                return self._stream(answer.model, answer.pieces, answer.content_type)
            return self._json(*answer)
        if path.endswith("/v1/messages"):
            self._anthropic(body, text, n, call)
        elif path.endswith("/chat/completions"):
            self._chat(body, text, n, call)
        elif path.endswith("/embeddings"):
            words = model == "fake-embed-words"  # the semantic tier's tests: a vector of the text's words
            vector = fake_protocols.word_vector(body.get("input")) if words else [n / 1000, 0.5, -0.25]
            self._json(200, {"object": "list", "model": model, "data": [
                {"object": "embedding", "index": 0, "embedding": vector}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        elif path.endswith("/responses"):
            self._responses(body, text, n, call)
        elif path.endswith("/completions"):
            self._completions(body, text, n)
        else:
            self._json(404, {"error": {"message": f"no route {path} (call #{n})"}})

    def _send(self, status: int, payload: bytes, content_type: str, encoding: str = "") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        if encoding:  # sent as it is, already encoded
            self.send_header("content-encoding", encoding)
        elif getattr(self, "gzip", False):
            payload = gzip.compress(payload)
            self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", "req_fake")
        self.send_header("set-cookie", "session=upstream-only")
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _stream(self, model: str, events: list[bytes], content_type: str = "text/event-stream; charset=utf-8",
                linger: float = 0.0) -> None:
        """Send stream pieces (SSE events, NDJSON lines, …) in a chunked body, honouring the model's
        failure behaviour. `linger`: seconds between the last event and the end of the body, as a
        real provider takes (a client may hang up in between: the Codex CLI does)."""
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", "no-cache")
        compressor = None
        if self.gzip:
            self.send_header("content-encoding", "gzip")
            compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        if model == "fake-cut":
            self.send_header("connection", "close")
            self.end_headers()
            for event in events[: len(events) // 2]:
                self.wfile.write(event)
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for i, event in enumerate(events):
            if model == "fake-truncate" and i == len(events) // 2:
                self.wfile.flush()
                self.connection.shutdown(2)  # drop the connection inside the chunked body
                self.close_connection = True
                return
            data = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH) if compressor else event
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if model == "fake-slow":
                time.sleep(0.3)
        if compressor:
            tail = compressor.flush()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        if linger:
            self.wfile.flush()
            time.sleep(linger)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- OpenAI chat --------------------------------------------------------------------------

    def _chat(self, body: dict, text: str, n: int, scripted: fake_agent.ToolCall | None = None) -> None:
        """Text; fake-tools (or a scripted call): a function call."""
        model = body.get("model") or "azure-deployment"  # Azure deployments may leave it to the path
        tools = model == "fake-tools" or scripted is not None
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        name, arguments, _ = scripted or fake_agent.ToolCall("get_weather", {"city": "Paris", "n": n})
        args = json.dumps(arguments)
        call = {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}
        if not body.get("stream"):
            if model == "fake-slow":  # a JSON answer that takes a second
                time.sleep(1)
            message: dict[str, Any] = {"role": "assistant", "content": None if tools else text, "refusal": None}
            if tools:
                message["tool_calls"] = [call]
            return self._json(200, {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1700000000 + n, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if tools else "stop"}],
                "usage": usage, "system_fingerprint": "fp_fake"})
        base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1700000000 + n, "model": model}

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"

        events = [b": keep-alive comment\n\n", chunk({"role": "assistant", "content": ""})]
        if tools:
            events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 8]}}]})
                       for i in range(0, len(args), 8)]
        elif model == "fake-huge":  # ~50 MB of text in 2 KB deltas
            piece = ("lorem ipsum dolor sit amet " * 80)[:2000]
            events += [chunk({"content": piece}) for _ in range(25_000)]
        else:
            events += [chunk({"content": word}) for word in pieces(text)]
        if model == "fake-error-event":
            events.append(b"data: " + json.dumps({"error": {"message": "provider overloaded"}}).encode() + b"\n\n")
        if model == "fake-midstream-error":  # OpenRouter: an error chunk with finish_reason "error", then the end
            error = {**base, "error": {"code": 502, "message": "Provider disconnected"},
                     "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]}
            events += [b"data: " + json.dumps(error).encode() + b"\n\n", b"data: [DONE]\n\n"]
            return self._stream(model, events)
        if model == "fake-openrouter":  # OpenRouter keeps the connection alive with SSE comments
            events = [b": OPENROUTER PROCESSING\n\n"] + events[:2] + [b": OPENROUTER PROCESSING\n\n"] + events[2:]
        if model == "fake-azure":  # Azure OpenAI opens with a prompt_filter_results chunk without choices
            filters = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                       "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
            events.insert(0, b"data: " + json.dumps(filters).encode() + b"\n\n")
        events.append(chunk({}, "tool_calls" if tools else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n")
        if model != "fake-no-done":  # some OpenAI-compatible servers never send [DONE]
            events.append(b"data: [DONE]\n\n")
        self._stream(model, events)

    # -- OpenAI responses and legacy completions ----------------------------------------------

    def _responses(self, body: dict, text: str, n: int, scripted: fake_agent.ToolCall | None = None) -> None:
        """Text; fake-tools (or a scripted call): a function call; fake-reasoning: a reasoning summary,
        then text; fake-error-event: the stream ends in response.failed."""
        model = body["model"]
        message = {"id": f"msg_{n}", "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        name, arguments, custom = scripted or fake_agent.ToolCall("get_weather", {"city": "Paris", "n": n})
        call = {"id": f"fc_{n}", "type": "function_call", "status": "completed", "call_id": f"call_{n}",
                "name": name, "arguments": json.dumps(arguments)}
        if custom is not None:  # a freeform tool (the Codex CLI's code mode)
            call = {"id": f"ctc_{n}", "type": "custom_tool_call", "status": "completed", "call_id": f"call_{n}",
                    "name": name, "input": custom}
        reasoning = {"id": f"rs_{n}", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]}
        outputs: dict[str, list[dict[str, Any]]] = {"fake-tools": [call], "fake-reasoning": [reasoning, message]}
        output = [call] if scripted else outputs.get(model, [message])
        response = {"id": f"resp_{n}", "object": "response", "created_at": 1700000000 + n, "model": model,
                    "status": "completed", "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
                    "tools": [], "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                                           "input_tokens_details": {"cached_tokens": 0},
                                           "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return self._json(200, response)
        seq = itertools.count()

        def event(name: str, data: dict) -> bytes:
            payload = {"type": name, "sequence_number": next(seq), **data}
            return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()

        started = {**response, "status": "in_progress", "output": [], "usage": None}
        events = [event("response.created", {"response": started})]
        for index, item in enumerate(output):
            at = {"item_id": item["id"], "output_index": index}
            if item is message:
                part = {"type": "output_text", "text": "", "annotations": []}
                events += [event("response.output_item.added", {"output_index": index,
                                                                "item": {**message, "status": "in_progress",
                                                                         "content": []}}),
                           event("response.content_part.added", {**at, "content_index": 0, "part": part})]
                events += [event("response.output_text.delta", {**at, "content_index": 0, "delta": w})
                           for w in pieces(text)]
                events.append(event("response.output_text.done", {**at, "content_index": 0, "text": text}))
            elif item is call and custom is not None:
                events += [event("response.output_item.added", {"output_index": index, "item": {**call, "input": ""}}),
                           event("response.custom_tool_call_input.delta", {**at, "delta": custom})]
            elif item is call:
                events += [event("response.output_item.added", {"output_index": index,
                                                                "item": {**call, "arguments": ""}}),
                           event("response.function_call_arguments.delta", {**at, "delta": call["arguments"]})]
            else:
                events += [event("response.output_item.added", {"output_index": index,
                                                                "item": {**item, "summary": []}}),
                           event("response.reasoning_summary_text.delta", {**at, "summary_index": 0,
                                                                           "delta": "Think."})]
            events.append(event("response.output_item.done", {"output_index": index, "item": item}))
        if model == "fake-error-event":
            events.append(event("response.failed", {"response": {**response, "status": "failed",
                                                                 "error": {"code": "server_error"}}}))
        else:
            events.append(event("response.completed", {"response": response}))
        self._stream(model, events, linger=0.2)

    def _completions(self, body: dict, text: str, n: int) -> None:
        model = body["model"]
        base = {"id": f"cmpl-{n}", "object": "text_completion", "created": 1700000000 + n, "model": model}
        if not body.get("stream"):
            return self._json(200, {**base, "choices": [{"text": text, "index": 0, "logprobs": None,
                                                         "finish_reason": "stop"}],
                                    "usage": {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}})
        events = [b"data: " + json.dumps({**base, "choices": [{"text": w, "index": 0, "logprobs": None,
                                                               "finish_reason": None}]}).encode() + b"\n\n"
                  for w in pieces(text)]
        events.append(b"data: " + json.dumps({**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                                                   "finish_reason": "stop"}]}).encode() + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        self._stream(model, events)

    # -- Anthropic messages -------------------------------------------------------------------

    def _anthropic(self, body: dict, text: str, n: int, scripted: fake_agent.ToolCall | None = None) -> None:
        model = body["model"]
        tools = model == "fake-tools" or scripted is not None
        name, arguments, _ = scripted or fake_agent.ToolCall("get_weather", {"city": "Paris", "n": n})
        tool = {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": arguments}
        if scripted:
            text = "Running it."
        content: list[dict] = [{"type": "text", "text": text}] + ([tool] if tools else [])
        usage = {"input_tokens": 13, "output_tokens": 9}
        message = {"id": f"msg_{n}", "type": "message", "role": "assistant", "model": model, "content": content,
                   "stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return self._json(200, message)

        def event(name: str, data: dict) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": 13, "output_tokens": 1}}
        events = [event("message_start", {"message": start}),
                  event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
                  event("ping", {})]
        events += [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
                   for w in pieces(text)]
        events.append(event("content_block_stop", {"index": 0}))
        if tools:
            raw = json.dumps(tool["input"])
            events.append(event("content_block_start", {"index": 1, "content_block": {**tool, "input": {}}}))
            events += [event("content_block_delta", {"index": 1, "delta": {
                "type": "input_json_delta", "partial_json": raw[i:i + 6]}}) for i in range(0, len(raw), 6)]
            events.append(event("content_block_stop", {"index": 1}))
        if model == "fake-error-event":
            events.append(event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}))
        events.append(event("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                              "usage": {"output_tokens": 9}}))
        events.append(event("message_stop", {}))
        self._stream(model, events)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", help="PEM with the server certificate chain and key, for HTTPS")
    args = parser.parse_args()
    servers = {"http": ThreadingHTTPServer(("127.0.0.1", 0), Handler)}
    if args.cert:
        https = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert)
        https.socket = context.wrap_socket(https.socket, server_side=True)
        servers["https"] = https
    for server in servers.values():
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({name: s.server_address[1] for name, s in servers.items()}), flush=True)
    try:
        threading.Event().wait()  # until killed by PID
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
