"""Stream parsing, validation and assembly, per protocol, as the stream grows: a cost that grows
faster than the stream shows here long before it stalls the proxy or the writer.

For each protocol a realistic stream (text deltas, tool-call argument deltas, logprobs, a usage
chunk; `openai.chat/long`: 240-character deltas, most of the stream text) of 50, 200 and 800 events
and of 4, 20 and 50 MB, and for each: `formats.stream_problem` (validation, on the event loop per
streamed miss), `formats.stream_to_json` (assembly, on the event loop per JSON hit answered from a
stream), `formats.usage_of` (in the writer, per stored stream) and the framing parse alone
(`sse.iter_events`, Ollama's `lines`). Times are the thread's CPU time (the machine's other load
does not count): small streams, best of repeated runs; large ones, one run.

    .venv/bin/python scripts/_bench_streams.py [--baseline DIR] [--budget SECONDS] [--sizes 50,800,4MB]

--baseline DIR: a directory holding another `llm_cache` package (e.g. `git archive HEAD llm_cache |
tar -x -C DIR`), measured in the same run beside this checkout's and checked to give the same
answers. A baseline cell whose time, extrapolated quadratically from the size before it, would pass
--budget is skipped.
"""

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `load` puts a baseline's package ahead of it when it measures one

from llm_cache.sse import encode as sse_encode  # noqa: E402

MB = 1 << 20
OPS = ("stream_problem", "stream_to_json", "usage_of", "iter_events")


def load(root: Path) -> SimpleNamespace:
    """The `llm_cache` package under `root`, imported afresh. Functions keep the modules they were
    imported with, so two versions live side by side once each is loaded."""
    for name in [name for name in sys.modules if name == "llm_cache" or name.startswith("llm_cache.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        modules = {name: importlib.import_module(f"llm_cache.{name}") for name in ("formats", "sse", "ollama")}
    finally:
        sys.path.remove(str(root))
    return SimpleNamespace(**modules)


# Streams, built here rather than by the package's own synthesis, which sends each text whole.

_sse = sse_encode  # this checkout's framing: the streams are the same whichever version is measured


def _word(i: int) -> str:
    return f" wörd{i % 997}"


def _line(i: int) -> str:
    """A long delta, as when a model writes out a file: most of the stream's bytes are then text."""
    return f"    line {i}: " + "lorem ipsum dolor sit amet, " * 8 + "\n"


def chat(n: int, word: Callable[[int], str] = _word) -> bytes:
    base = {"id": "chatcmpl-B9", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_0ba0d124f1"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def events() -> Iterator[tuple[str | None, Any]]:
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        texts = n * 3 // 4
        for i in range(texts):
            yield chunk({"content": word(i)})
        yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                     "function": {"name": "lookup", "arguments": ""}}]})
        for i in range(n - texts):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'{{"k{i}": {i}, ' if i == 0
                                                                  else f'"k{i}": {i}, '}}]})
        yield chunk({}, "tool_calls")
        yield None, {**base, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": n}}
        yield None, "[DONE]"

    return _sse(events())


def completions(n: int) -> bytes:
    base = {"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "gpt-3.5-turbo-instruct"}

    def events() -> Iterator[tuple[str | None, Any]]:
        for i in range(n):
            word = _word(i)
            logprobs = {"tokens": [word], "token_logprobs": [-0.25], "top_logprobs": None, "text_offset": [i]}
            yield None, {**base, "choices": [{"text": word, "index": 0, "logprobs": logprobs,
                                              "finish_reason": "length" if i == n - 1 else None}]}
        yield None, {**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}}
        yield None, "[DONE]"

    return _sse(events())


def responses(n: int) -> bytes:
    text = "".join(_word(i) for i in range(n))
    message = {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    done = {"id": "resp_1", "object": "response", "created_at": 1700000000, "status": "completed",
            "model": "gpt-4.1", "output": [message], "usage": {"input_tokens": 5, "output_tokens": n}}
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}

    def events() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "response.created", {"response": started}
        yield "response.in_progress", {"response": started}
        yield "response.output_item.added", {"output_index": 0, "item": {**message, "content": []}}
        yield "response.content_part.added", {**at, "part": {"type": "output_text", "text": "", "annotations": []}}
        for i in range(n):
            yield "response.output_text.delta", {**at, "delta": _word(i), "logprobs": []}
        yield "response.output_text.done", {**at, "text": text, "logprobs": []}
        yield "response.content_part.done", {**at, "part": message["content"][0]}
        yield "response.output_item.done", {"output_index": 0, "item": message}
        yield "response.completed", {"response": done}

    return _sse((kind, {"type": kind, "sequence_number": i, **data}) for i, (kind, data) in enumerate(events()))


def anthropic(n: int) -> bytes:
    def events() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant",
                                            "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                            "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}
        yield "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        yield "ping", {}
        texts = n * 3 // 4
        for i in range(texts):
            yield "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": _word(i)}}
        yield "content_block_stop", {"index": 0}
        yield "content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                    "name": "lookup", "input": {}}}
        json_pieces = [f'{{"k{i}": {i}' if i == 0 else f', "k{i}": {i}' for i in range(n - texts)] + ["}"]
        for piece in json_pieces:
            yield "content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}
        yield "content_block_stop", {"index": 1}
        yield "message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                "usage": {"output_tokens": n}}
        yield "message_stop", {}

    return _sse((kind, {"type": kind, **data}) for kind, data in events())


def gemini(n: int) -> bytes:
    def events() -> Iterator[tuple[None, dict[str, Any]]]:
        for i in range(n):
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": _word(i)}]}, "index": 0}
            chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash",
                                     "responseId": "r1"}
            if i == n - 1:
                candidate["finishReason"] = "STOP"
                chunk["usageMetadata"] = {"promptTokenCount": 4, "candidatesTokenCount": n, "totalTokenCount": n + 4}
            yield None, chunk

    return _sse(events())


def ollama(n: int) -> bytes:
    lines = [{"model": "llama3.2", "created_at": "2025-01-01T00:00:00.000000Z",
              "message": {"role": "assistant", "content": _word(i)}, "done": False} for i in range(n)]
    lines.append({"model": "llama3.2", "created_at": "2025-01-01T00:00:01.000000Z",
                  "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": 7, "eval_count": n, "total_duration": 123456789})
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


PROTOCOLS: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "openai.chat": ("OPENAI_CHAT", chat),
    "openai.chat/long": ("OPENAI_CHAT", lambda n: chat(n, _line)),
    "openai.completions": ("OPENAI_COMPLETIONS", completions),
    "openai.responses": ("OPENAI_RESPONSES", responses),
    "anthropic.messages": ("ANTHROPIC_MESSAGES", anthropic),
    "gemini.generate": ("GEMINI_GENERATE", gemini),
    "ollama.chat": ("OLLAMA_CHAT", ollama),
}


def stream_of(make: Callable[[int], bytes], size: str) -> bytes:
    """`size` is an event count ("800") or a size in MB ("20MB"), reached to within one event."""
    if not size.upper().endswith("MB"):
        return make(int(size))
    target = int(float(size[:-2]) * MB)
    sample = make(1000)
    return make(max(1, round(1000 * target / len(sample))))


def operation(version: SimpleNamespace, family_name: str, op: str) -> Callable[[bytes], Any]:
    formats = version.formats
    family = formats.Family[family_name]
    if op == "stream_problem":
        return lambda body: formats.stream_problem(family, body)
    if op == "stream_to_json":
        return lambda body: formats.stream_to_json(family, body)
    if op == "usage_of":
        return lambda body: tuple(formats.usage_of(family, body, is_stream=True))
    if family_name.startswith("OLLAMA"):
        return lambda body: len(list(version.ollama.lines(body)))
    return lambda body: [tuple(event) for event in version.sse.iter_events(body)]


def timed(run: Callable[[bytes], Any], body: bytes) -> tuple[float, Any]:
    """(seconds per call, the call's result): best of several runs for a small body."""
    started = time.thread_time()
    result = run(body)
    best = time.thread_time() - started
    spent = best
    while spent < 0.3 and best < 0.05:
        started = time.thread_time()
        run(body)
        took = time.thread_time() - started
        best, spent = min(best, took), spent + took
    return best, result


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.3f}" if seconds < 0.01 else f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="a directory holding another llm_cache package")
    parser.add_argument("--budget", type=float, default=30.0, help="skip baseline cells predicted past this (s)")
    parser.add_argument("--sizes", default="50,200,800,4MB,20MB,50MB")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--ops", default=",".join(OPS))
    args = parser.parse_args()

    baseline = load(args.baseline) if args.baseline else None
    current = load(ROOT)
    sizes = args.sizes.split(",")
    ops = args.ops.split(",")
    header = f"{'protocol':<19} {'op':<15} {'size':>6} {'events':>7} {'MB':>6}"
    header += f" {'before ms':>10} {'after ms':>9} {'x':>7}" if baseline else f" {'ms':>9} {'µs/event':>9}"
    print(header, flush=True)
    mismatches = 0
    for protocol in args.protocols.split(","):
        family_name, make = PROTOCOLS[protocol]
        last_before: dict[str, tuple[int, float]] = {}
        for size in sizes:
            body = stream_of(make, size)
            count = body.count(b"\n\n") if not family_name.startswith("OLLAMA") else body.count(b"\n")
            for op in ops:
                after, result = timed(operation(current, family_name, op), body)
                line = f"{protocol:<19} {op:<15} {size:>6} {count:>7} {len(body) / MB:>6.2f}"
                if baseline is None:
                    print(f"{line} {_ms(after):>9} {after * 1e6 / count:>9.2f}", flush=True)
                    continue
                before: float | None = None
                note = ""
                previous = last_before.get(op)
                predicted = previous[1] * (len(body) / previous[0]) ** 2 if previous else 0.0
                if predicted > args.budget:
                    note = f"  (before skipped: ~{predicted:.0f} s if quadratic)"
                else:
                    before, expected = timed(operation(baseline, family_name, op), body)
                    last_before[op] = (len(body), before)
                    if expected != result:
                        mismatches += 1
                        note = "  MISMATCH"
                ratio = f"{before / after:>7.1f}" if before is not None else f"{'':>7}"
                print(f"{line} {_ms(before):>10} {_ms(after):>9} {ratio}{note}", flush=True)
    if baseline is not None:
        print(f"\n{mismatches} result(s) differ between the baseline and this checkout")
        sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()
