"""scripts/bench: llm-cache against bare mitmproxy, measured in one run on this machine.

Three mitmdumps, each with a regular proxy listener (plain HTTP, absolute-form requests) and a
reverse HTTPS listener (TLS keep-alive between client and proxy):
  bare      scripts/bench_addons.py doing nothing: plain passthrough
  fixed     scripts/bench_addons.py answering every request from the request hook: the hit ceiling
  llm-cache addon.py on a SQLite file pre-filled with --entries entries
wrk (one thread, keep-alive connections) is the load; a small asyncio server is the upstream, fast
enough that the proxies, not it, are what is measured. Requests carry a --body-kb chat body.

Agent-shaped rows beside them: streamed hits of 50, 200 and 800 events (each against a fixed
answer of the same bytes), a JSON request answered from a recorded 800-event stream (against a JSON
hit), and, with --postgres URL, JSON hits from a PostgreSQL cache (against SQLite's).

--semantic also measures the semantic tier (scripts/_bench_semantic.py): a fourth proxy, llm-cache
with llm_cache_semantic=true on its own copy of the cache, answering semantic hits (a short last
turn and a --body-kb one, each changed only in framing or punctuation), exact hits, and misses.

--misses measures instead where a miss's cost goes: bare mitmproxy against llm-cache with
llm_cache_mode off, readonly and record (miss_breakdown).

LLM_CACHE_BENCH_KEEP=1 keeps the run's folder (the cache, each proxy's log); with
LLM_CACHE_BENCH_VERBOSE=1 the logs have every flow too.
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from _bench_streams import chat as chat_stream  # noqa: E402

import cache_models  # noqa: E402
from llm_cache import formats, keys, openai_chat  # noqa: E402
from llm_cache.endpoints import Family, Route  # noqa: E402
from tests.support.procs import BIN, clean_env, stop_pid  # noqa: E402

COMPLETION = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 42. " * 8},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5000, "completion_tokens": 40, "total_tokens": 5040},
}
COMPLETION_BYTES = orjson.dumps(COMPLETION)


# -- the upstream -------------------------------------------------------------------------------

STREAM_FIRST = openai_chat.synthesise(COMPLETION, include_usage=False).split(b"\n\n", 1)[0] + b"\n\n"
STREAM_REST = openai_chat.synthesise(COMPLETION, include_usage=False).split(b"\n\n", 1)[1]
STREAM_DELAY = 0.2  # between a stream's first event and the rest


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class FixedAnswer(asyncio.Protocol):
    """HTTP/1.1 keep-alive server answering every request with COMPLETION, or, for a body with
    "stream":true, with its SSE form: the first event at once, the rest STREAM_DELAY later."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % len(COMPLETION_BYTES)) + COMPLETION_BYTES
    STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buffer[:end]).lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4: end + 4 + length])
            del self.buffer[: end + 4 + length]
            if b'"stream":true' in body:
                self.transport.write(self.STREAM_HEAD + _chunk(STREAM_FIRST))
                rest = _chunk(STREAM_REST) + b"0\r\n\r\n"
                asyncio.get_running_loop().call_later(STREAM_DELAY, self.transport.write, rest)
            else:
                self.transport.write(self.RESPONSE)


def serve_upstream(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(FixedAnswer, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- setup ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def chat_body(kb: int, prompt: str, stream: bool = False) -> bytes:
    filler = ("You are a careful coding agent. Follow the repository's conventions. " * 400)[: kb * 1024]
    body = {"model": "gpt-4o-mini", "temperature": 0,
            "messages": [{"role": "system", "content": filler}, {"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def key_for(scheme: str, port: int, body: bytes) -> str:
    facts = keys.body_facts(Route(Family.OPENAI_CHAT), keys.parse_json(body))
    assert facts is not None
    target = keys.make_target("POST", scheme, "api.openai.com", port, "/v1/chat/completions", (), ())
    return keys.cache_key(target, facts.digest)


STREAM_EVENTS = (50, 200, 800)  # agent answers: a short reply, a tool call, a long answer with thinking


def prefill(url: str, entries: int, hits: dict[str, tuple[bytes, bool]]) -> None:
    """`entries` filler rows plus the entries the hit scenarios ask for (a stream with its assembled
    JSON, as the writer stores it)."""
    db = cache_models.open_database(url)
    cache_models.CacheEntry.delete().execute()
    now = time.time()

    def row(key: str, body: bytes, is_stream: bool) -> dict:
        return entry_row(key, body, is_stream, now)

    rng = random.Random(7)
    with db.atomic():
        for start in range(0, entries, 2000):
            batch = [row(hashlib.sha256(rng.randbytes(16)).hexdigest(), COMPLETION_BYTES, False)
                     for _ in range(start, min(entries, start + 2000))]
            cache_models.CacheEntry.insert_many(batch).execute()
        for key, (body, is_stream) in hits.items():
            cache_models.CacheEntry.insert_many([row(key, body, is_stream)]).execute()
    db.close()


def entry_row(key: str, body: bytes, is_stream: bool, now: float) -> dict:
    """A cache_entry row as the writer stores it (a stream with its assembled JSON)."""
    content_type = "text/event-stream" if is_stream else "application/json"
    assembled = orjson.dumps(formats.assembled(Family.OPENAI_CHAT, body)) if is_stream else None
    return {"key": key, "family": "openai.chat", "host": "api.openai.com", "model": "gpt-4o-mini",
            "status": 200, "headers": f'[["content-type","{content_type}"]]', "body": body,
            "is_stream": is_stream, "request": b"{}", "created_at": now, "hit_count": 0, "assembled": assembled}


class Proxy:
    def __init__(self, name: str, folder: Path, args: list[str]) -> None:
        self.name = name
        self.http_port, self.https_port = free_port(), free_port()
        confdir = folder / "confdir"
        confdir.mkdir(exist_ok=True)
        verbose = [] if os.environ.get("LLM_CACHE_BENCH_VERBOSE") else ["-q"]  # flows in the log, or not
        cmd = [str(BIN / "mitmdump"), *verbose, "--set", f"confdir={confdir}", "--listen-host", "127.0.0.1",
               "--set", "connection_strategy=lazy", "--mode", f"regular@{self.http_port}",
               "--mode", f"reverse:https://api.openai.com@{self.https_port}", *args]
        # Its log goes to a file: a pipe nobody reads fills up and then blocks mitmdump's event loop.
        self.log = folder / f"mitmdump-{name}.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=clean_env(), stdout=log, stderr=log)
        wait_port(self.http_port)
        wait_port(self.https_port)

    def stop(self) -> None:
        stop_pid(self.proc)


# -- load ---------------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.path = "%(path)s"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer sk-bench-not-a-real-key"
local f = io.open("%(body)s", "rb")
local body = f:read("*a")
f:close()
local unique = %(unique)s
local counter = 0
local fixed = nil
math.randomseed(os.time())
local salt = tostring(math.random(1000000000))
request = function()
  if unique then
    counter = counter + 1
    return wrk.format(nil, nil, nil, (string.gsub(body, "UNIQUE", salt .. "-" .. counter)))
  end
  if fixed == nil then fixed = wrk.format(nil, nil, nil, body) end
  return fixed
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, path: str, body_file: Path, *, unique: bool, seconds: int, connections: int,
        folder: Path, pid: int) -> dict:
    script = folder / f"wrk-{abs(hash((url, path, unique)))}.lua"
    script.write_text(WRK_SCRIPT % {"path": path, "body": body_file, "unique": "true" if unique else "false"})
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    requests, duration_us, p50_us, p99_us, bad_status, io_errors = map(int, line.split()[1:])
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50_us / 1000, "p99_ms": p99_us / 1000,
            "requests": requests, "errors": bad_status + io_errors, "cpu_us": cpu / max(requests, 1) * 1e6}


def time_to_first_event(proxy_port: int | None, upstream_port: int, body_kb: int, count: int = 20) -> dict:
    """Streamed misses, one at a time: when the first event reaches the client, and the last.
    With no proxy port, straight to the upstream: the baseline."""
    firsts, lasts = [], []
    target = b"/v1/chat/completions" if proxy_port is None else (
        b"http://127.0.0.1:%d/v1/chat/completions" % upstream_port)
    for n in range(count):
        body = chat_body(body_kb, f"ttfb {n} {random.random()}", stream=True)
        request = (b"POST %s HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
                   b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                   % (target, upstream_port, len(body))) + body
        with socket.create_connection(("127.0.0.1", proxy_port or upstream_port)) as sock:
            start = time.perf_counter()
            sock.sendall(request)
            received, first = b"", None
            # To the last chunk of the body ("\r\n0\r\n\r\n"; a header value may end in "0").
            while not received.partition(b"\r\n\r\n")[2].endswith(b"\r\n0\r\n\r\n") and (chunk := sock.recv(65536)):
                received += chunk
                if first is None and b"data:" in received:
                    first = time.perf_counter() - start
            lasts.append(time.perf_counter() - start)
        if first is None or b"[DONE]" not in received:
            raise RuntimeError(f"the streamed miss through port {proxy_port} did not arrive whole: {received[-300:]!r}")
        firsts.append(first)
    return {"first_ms": sorted(firsts)[count // 2] * 1000, "last_ms": sorted(lasts)[count // 2] * 1000}


def check_hit(port: int, body: bytes, *, https_port: int | None = None, expect: str = "HIT") -> dict[str, str]:
    """Refuse to measure "hits" that are not hits (through the reverse HTTPS listener when given):
    the answer's X-LLM-Cache must be `expect`. Returns the answer's headers."""
    if https_port is None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"}))
        url = "http://api.openai.com/v1/chat/completions"
    else:  # the proxy's own certificate, which this check has no reason to trust
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl._create_unverified_context()))
        url = f"https://127.0.0.1:{https_port}/v1/chat/completions"
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    with opener.open(request, timeout=10) as response:
        if response.headers.get("X-LLM-Cache") != expect:
            raise RuntimeError(f"a pre-filled entry was answered {response.headers.get('X-LLM-Cache')}, not {expect}: "
                               "the benchmark would measure something else")
        return dict(response.headers.items())


# -- the run ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all scenarios; medians are reported, "
                        "and each ratio is the median of its rounds' ratios")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections wrk holds open")
    parser.add_argument("--entries", type=int, default=100_000, help="entries in the cache during hits")
    parser.add_argument("--body-kb", type=int, default=20, help="size of the chat request body")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--postgres", metavar="URL", help="also measure JSON hits from this PostgreSQL database "
                        "(emptied and filled like the SQLite one), e.g. postgresql://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--hooks", type=int, metavar="N", help="instead: N fresh misses through the addon's hooks "
                        "in-process (scripts/_bench_hooks.py), steadier than the proxies for an A/B")
    parser.add_argument("--stream-events", type=int, default=0, metavar="E", help="with --hooks: streamed misses "
                        "answered by an E-event stream")
    parser.add_argument("--misses", action="store_true", help="instead: where a miss's cost goes: fresh misses "
                        "through bare mitmproxy and through llm-cache with llm_cache_mode off, readonly and record")
    parser.add_argument("--hits-only", action="store_true", help="only a JSON hit over HTTPS and its ceiling, "
                        "alternating: with --rounds 8, the steadiest reading of the hit ratio on a noisy machine")
    parser.add_argument("--semantic", action="store_true", help="also measure the semantic tier: semantic hits "
                        "(a short and a --body-kb last turn), exact hits and misses through llm-cache with "
                        "llm_cache_semantic=true, on its own copy of the cache")
    args = parser.parse_args()
    if args.hooks:
        from _bench_hooks import measure as measure_hooks

        measure_hooks(args.hooks, args.body_kb, args.stream_events)
        return
    if shutil.which("wrk") is None:
        sys.exit("scripts/bench needs wrk (Debian: apt-get install wrk)")

    folder = Path(tempfile.mkdtemp(prefix="llm-cache-bench-"))
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(upstream_port)])
    proxies: list[Proxy] = []
    try:
        wait_port(upstream_port)
        hit_body, miss_body = chat_body(args.body_kb, "bench hit"), chat_body(args.body_kb, "bench miss UNIQUE")
        for name, data in (("hit.json", hit_body), ("miss.json", miss_body)):
            (folder / name).write_bytes(data)
        (folder / "fixed.json").write_bytes(COMPLETION_BYTES)
        hits = {key_for("https", 443, hit_body): (COMPLETION_BYTES, False),
                key_for("http", 80, hit_body): (COMPLETION_BYTES, False)}
        for events in STREAM_EVENTS:  # each streamed hit's request names its fixed ceiling (bench_addons.py)
            case = f"stream-{events}.sse"
            stream_body = chat_body(args.body_kb, f"bench-case:{case}", True)
            (folder / f"stream-{events}.json").write_bytes(stream_body)
            (folder / case).write_bytes(chat_stream(events))
            hits[key_for("https", 443, stream_body)] = (chat_stream(events), True)
        # The same request without "stream": its key is the stream's, its answer the assembled JSON.
        (folder / "from-stream.json").write_bytes(chat_body(args.body_kb, f"bench-case:stream-{STREAM_EVENTS[-1]}.sse"))
        print(f"pre-filling {args.entries} entries ...", file=sys.stderr)
        prefill(f"sqlite:///{folder / 'cache.sqlite3'}", args.entries, hits)
        if args.postgres:
            print(f"pre-filling {args.entries} entries in PostgreSQL ...", file=sys.stderr)
            prefill(args.postgres, args.entries, hits)
        semantic_added = prepare_semantic(args, folder, hit_body) if args.semantic and not args.misses else (0, 0)

        refs = str(ROOT / "scripts" / "bench_addons.py")
        if args.misses:
            miss_breakdown(args, folder, upstream_port, refs, proxies)
            return

        def lag(name: str) -> list[str]:
            return ["--set", f"bench_loop_lag={folder / f'lag-{name}.json'}"]

        bare = Proxy("bare", folder, ["-s", refs, *lag("bare")])
        fixed = Proxy("fixed", folder, ["-s", refs, *lag("fixed"),
                                        "--set", f"bench_fixed_response={folder / 'fixed.json'}"])
        cache = Proxy("llm-cache", folder, ["-s", str(ROOT / "addon.py"), "-s", refs, *lag("llm-cache"),
                                            "--set", f"llm_cache_db=sqlite:///{folder / 'cache.sqlite3'}"])
        proxies += [bare, fixed, cache]
        check_hit(cache.http_port, hit_body)
        for name in [f"stream-{events}.json" for events in STREAM_EVENTS] + ["from-stream.json"]:
            check_hit(cache.http_port, (folder / name).read_bytes(), https_port=cache.https_port)
        postgres = None
        if args.postgres:
            postgres = Proxy("postgres", folder, ["-s", str(ROOT / "addon.py"), "-s", refs, *lag("postgres"),
                                                  "--set", f"llm_cache_db={args.postgres}"])
            proxies.append(postgres)
            deadline = time.monotonic() + 15  # a database server is opened on a thread: until then, misses
            while True:
                try:
                    check_hit(postgres.http_port, hit_body)
                    break
                except (OSError, RuntimeError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        semantic = None
        if args.semantic:
            semantic = Proxy("llm-cache-semantic", folder, [
                "-s", str(ROOT / "addon.py"), "-s", refs, *lag("llm-cache-semantic"),
                "--set", f"llm_cache_db=sqlite:///{folder / 'cache-semantic.sqlite3'}",
                "--set", "llm_cache_semantic=true"])
            proxies.append(semantic)
            check_hit(semantic.http_port, hit_body, https_port=semantic.https_port)  # exact hits stay exact
            for name in ("semantic-short.json", "semantic-long.json"):
                answer = check_hit(semantic.http_port, (folder / name).read_bytes(), https_port=semantic.https_port,
                                   expect="HIT-SEMANTIC")
                print(f"{name}: HIT-SEMANTIC, similarity {answer.get('X-LLM-Cache-Similarity')}", file=sys.stderr)

        def run(proxy: Proxy, tls: bool, body: str, unique: bool = False) -> dict:
            if tls:
                url, path = f"https://127.0.0.1:{proxy.https_port}", "/v1/chat/completions"
            elif unique:
                return measure_misses(proxy, upstream_port, args, folder)
            else:
                url, path = f"http://127.0.0.1:{proxy.http_port}", "http://api.openai.com/v1/chat/completions"
            return measure(proxy, url, path, body, args, folder, unique=False)

        scenarios = {
            "ceiling, HTTPS (fixed response)": (fixed, True, "hit.json", False),
            "hit JSON, HTTPS": (cache, True, "hit.json", False),
            **({"hit JSON, HTTPS, PostgreSQL": (postgres, True, "hit.json", False)} if postgres else {}),
            **({"hit JSON, HTTPS, semantic on": (semantic, True, "hit.json", False),
                "hit semantic, HTTPS, short last turn": (semantic, True, "semantic-short.json", False),
                f"hit semantic, HTTPS, {args.body_kb} KB last turn": (semantic, True, "semantic-long.json", False)}
               if semantic else {}),
            **{name: scenario for events in STREAM_EVENTS for name, scenario in (
                (f"ceiling, {events}-event stream, HTTPS", (fixed, True, f"stream-{events}.json", False)),
                (f"hit {events}-event stream, HTTPS", (cache, True, f"stream-{events}.json", False)))},
            f"hit JSON from {STREAM_EVENTS[-1]}-event stream, HTTPS": (cache, True, "from-stream.json", False),
            "ceiling, HTTP (fixed response)": (fixed, False, "hit.json", False),
            "hit JSON, HTTP": (cache, False, "hit.json", False),
            "passthrough, HTTP (bare mitmproxy)": (bare, False, "miss.json", True),
            "miss, HTTP (llm-cache records)": (cache, False, "miss.json", True),
            **({"miss, HTTP (semantic on)": (semantic, False, "miss.json", True)} if semantic else {}),
        }
        if args.hits_only:
            scenarios = {name: scenarios[name] for name in ("ceiling, HTTPS (fixed response)", "hit JSON, HTTPS")}
        # Rounds interleave the scenarios, so a slow spell of the machine hits all of them alike;
        # each scenario reports its median round. A ratio is taken within each round, between two
        # scenarios measured one after the other (a ceiling and its hit), and the median of those is
        # reported: on this machine the rate of one proxy moves by a quarter from one minute to the
        # next, more than the targets' margins, and a paired ratio cancels most of it.
        rounds: dict[str, list[dict]] = {name: [] for name in scenarios}
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds} ...", file=sys.stderr)
            for name, (proxy, tls, body, unique) in scenarios.items():
                rounds[name].append(run(proxy, tls, body, unique))
        results = {name: median_round(runs) for name, runs in rounds.items()}
        ttfb = {}
        if not args.hits_only:
            print("streamed misses, time to first event ...", file=sys.stderr)
            ttfb = {name: time_to_first_event(port, upstream_port, args.body_kb)
                    for name, port in (("no proxy", None), ("bare mitmproxy", bare.http_port),
                                       ("llm-cache (records)", cache.http_port))}
        ratios = {
            "hit JSON HTTPS / ceiling HTTPS": ("hit JSON, HTTPS", "ceiling, HTTPS (fixed response)", 0.95),
            **{f"hit {events}-ev stream / its ceiling": (f"hit {events}-event stream, HTTPS",
                                                        f"ceiling, {events}-event stream, HTTPS", 0.95)
               for events in STREAM_EVENTS},
            f"JSON from {STREAM_EVENTS[-1]}-ev stream / hit JSON": (
                f"hit JSON from {STREAM_EVENTS[-1]}-event stream, HTTPS", "hit JSON, HTTPS", 0.90),
            **({"PostgreSQL hit / SQLite hit": ("hit JSON, HTTPS, PostgreSQL", "hit JSON, HTTPS", 0.90)}
               if postgres else {}),
            "hit JSON HTTP / ceiling HTTP": ("hit JSON, HTTP", "ceiling, HTTP (fixed response)", 0.95),
            "miss / passthrough": ("miss, HTTP (llm-cache records)", "passthrough, HTTP (bare mitmproxy)", 0.90),
            **({"semantic hit / exact hit": ("hit semantic, HTTPS, short last turn", "hit JSON, HTTPS", None),
                f"semantic hit, {args.body_kb} KB turn / exact hit": (
                    f"hit semantic, HTTPS, {args.body_kb} KB last turn", "hit JSON, HTTPS", None),
                "exact hit, semantic on / off": ("hit JSON, HTTPS, semantic on", "hit JSON, HTTPS", 0.95),
                "miss semantic on / off": ("miss, HTTP (semantic on)", "miss, HTTP (llm-cache records)", None)}
               if semantic else {}),
        }
        ratios = {name: ratio for name, ratio in ratios.items() if ratio[0] in results and ratio[1] in results}
        for proxy in proxies:
            proxy.stop()  # each writes its loop-lag samples as it shuts down
        attach_loop_lag(rounds, results, folder)
        stored = cache_models.open_database(f"sqlite:///{folder / 'cache.sqlite3'}")
        recorded = cache_models.CacheEntry.select().count() - args.entries - len(hits)
        stored.close()
        report(args, results, ratios, recorded, ttfb, rounds)
        if semantic:
            from _bench_semantic import counts

            entries, vectors = counts(folder / "cache-semantic.sqlite3")
            print(f"semantic proxy: entries recorded by its miss runs (warm-ups included): "
                  f"{entries - semantic_added[0]}, vectors recorded with them: {vectors - semantic_added[1]}; "
                  f"misses answered in its measured runs: {results['miss, HTTP (semantic on)']['requests']}")
    finally:
        for proxy in proxies:
            proxy.stop()
        stop_pid(upstream)
        if os.environ.get("LLM_CACHE_BENCH_KEEP"):  # the proxies' logs and the cache, to look into
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def prepare_semantic(args: argparse.Namespace, folder: Path, hit_body: bytes) -> tuple[int, int]:
    """scripts/bench --semantic: the semantic proxy's copy of the pre-filled cache, with the vectors
    of the stored turns its semantic hits are answered from and the long-turn request's entry
    (scripts/_bench_semantic.py), and the paraphrases asked. Returns the copy's (entries, vectors)."""
    from _bench_semantic import SHORT_ASKED, add_to_cache, counts, long_turn_body

    db = folder / "cache-semantic.sqlite3"
    shutil.copyfile(folder / "cache.sqlite3", db)
    long_stored = long_turn_body(args.body_kb)
    long_key = key_for("https", 443, long_stored)
    print("embedding the stored turns for the semantic proxy ...", file=sys.stderr)
    add_to_cache(db, [entry_row(long_key, COMPLETION_BYTES, False, time.time())],
                 [(hit_body, key_for("https", 443, hit_body)), (long_stored, long_key)])
    (folder / "semantic-short.json").write_bytes(chat_body(args.body_kb, SHORT_ASKED))
    (folder / "semantic-long.json").write_bytes(long_turn_body(args.body_kb, asked=True))
    return counts(db)


def measure(proxy: Proxy, url: str, path: str, body: str, args: argparse.Namespace, folder: Path, *,
            unique: bool) -> dict:
    """One measured wrk run after a 1 s warm-up; `window` says when, for the loop-lag samples."""
    opts = dict(unique=unique, connections=args.connections, folder=folder, pid=proxy.proc.pid)
    wrk(url, path, folder / body, seconds=1, **opts)  # warm-up
    started = time.time()
    result = wrk(url, path, folder / body, seconds=args.seconds, **opts)
    result["window"] = (proxy.name, started, time.time())
    return result


def measure_misses(proxy: Proxy, upstream_port: int, args: argparse.Namespace, folder: Path) -> dict:
    """Requests with a body never seen before, through the proxy's plain HTTP listener to the upstream."""
    return measure(proxy, f"http://127.0.0.1:{proxy.http_port}", f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
                   "miss.json", args, folder, unique=True)


MISS_MODES = {
    "off": "the addon loaded, every hook returning at once",
    "readonly": "each miss recognised, keyed and looked up; nothing recorded, so no secret scan",
    "record": "as the product runs: also scanned, validated and handed to the writer",
}


def miss_breakdown(args: argparse.Namespace, folder: Path, upstream_port: int, refs: str,
                   proxies: list[Proxy]) -> None:
    """scripts/bench --misses: what a miss costs the proxy beyond passthrough, step by step. Bare
    mitmproxy and llm-cache in each of MISS_MODES (each on its own copy of the pre-filled cache),
    measured in interleaved rounds like the main run."""
    scenarios = {"passthrough (bare mitmproxy)": Proxy("bare", folder, ["-s", refs])}
    proxies.append(scenarios["passthrough (bare mitmproxy)"])
    for mode in MISS_MODES:
        db = folder / f"cache-{mode}.sqlite3"
        shutil.copyfile(folder / "cache.sqlite3", db)
        proxy = Proxy(mode, folder, ["-s", str(ROOT / "addon.py"), "-s", refs, "--set", f"llm_cache_db=sqlite:///{db}",
                                     "--set", f"llm_cache_mode={mode}"])
        proxies.append(proxy)
        scenarios[f"llm-cache, llm_cache_mode={mode}"] = proxy
    rounds: dict[str, list[dict]] = {name: [] for name in scenarios}
    for number in range(args.rounds):
        print(f"round {number + 1} of {args.rounds} ...", file=sys.stderr)
        for name, proxy in scenarios.items():
            rounds[name].append(measure_misses(proxy, upstream_port, args, folder))
    results = {name: median_round(runs) for name, runs in rounds.items()}
    bare = results["passthrough (bare mitmproxy)"]
    print(f"\nllm-cache miss breakdown: {os.cpu_count()} cores, wrk -t1 -c{args.connections}, {args.rounds} rounds of "
          f"{args.seconds} s, fresh {args.body_kb} KB chat bodies, {args.entries} entries in the cache "
          "(median round)\n")
    print(f"| {'scenario':<36} | {'req/s':>6} | {'min-max req/s':>13} | {'p50 ms':>6} | {'proxy CPU/req':>13} | "
          f"{'CPU over bare':>13} | {'req/s ratio':>11} | {'CPU ratio':>9} |")
    print(f"|{'-' * 38}|{'-' * 8}|{'-' * 15}|{'-' * 8}|{'-' * 15}|{'-' * 15}|{'-' * 13}|{'-' * 11}|")
    for name, r in results.items():
        spread = f"{r['spread'][0]:.0f}-{r['spread'][1]:.0f}"
        print(f"| {name:<36} | {r['rps']:>6.0f} | {spread:>13} | {r['p50_ms']:>6.2f} | {r['cpu_us']:>10.0f} us | "
              f"{r['cpu_us'] - bare['cpu_us']:>+10.0f} us | {r['rps'] / bare['rps']:>11.1%} | "
              f"{bare['cpu_us'] / r['cpu_us']:>9.1%} |")
    print("\n" + "\n".join(f"  {mode:<9} {what}" for mode, what in MISS_MODES.items()))
    print("The target for misses is record's req/s ratio: at least 90% of bare passthrough.")
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2, default=str))


def attach_loop_lag(rounds: dict[str, list[dict]], results: dict[str, dict], folder: Path) -> None:
    """p99 and max event-loop lag of each scenario, over the windows of all its measured rounds."""
    samples = {run["window"][0]: orjson.loads((folder / f"lag-{run['window'][0]}.json").read_bytes())
               for runs in rounds.values() for run in runs}
    for scenario, runs in rounds.items():
        lags = sorted(lag for run in runs for (t, lag) in samples[run["window"][0]]
                      if run["window"][1] <= t <= run["window"][2])
        results[scenario]["lag_p99_ms"] = lags[int(len(lags) * 0.99)] * 1000 if lags else float("nan")
        results[scenario]["lag_max_ms"] = lags[-1] * 1000 if lags else float("nan")


def median_round(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["rps"])
    middle = dict(ordered[len(ordered) // 2])
    middle["spread"] = (ordered[0]["rps"], ordered[-1]["rps"])
    middle["cpu_us"] = sorted(r["cpu_us"] for r in runs)[len(runs) // 2]
    middle["requests"] = sum(r["requests"] for r in runs)
    return middle


def paired(rounds: dict[str, list[dict]], top: str, bottom: str) -> tuple[float, float, float, float]:
    """The median of the rounds' ratios top/bottom, in req/s and in CPU per request, and the
    lowest and highest req/s ratio of a round."""
    by_rps = sorted(t["rps"] / b["rps"] for t, b in zip(rounds[top], rounds[bottom], strict=True))
    by_cpu = sorted(b["cpu_us"] / t["cpu_us"] for t, b in zip(rounds[top], rounds[bottom], strict=True))
    return by_rps[len(by_rps) // 2], by_cpu[len(by_cpu) // 2], by_rps[0], by_rps[-1]


def report(args: argparse.Namespace, results: dict, ratios: dict, recorded: int, ttfb: dict,
           rounds: dict[str, list[dict]]) -> None:
    print(f"\nllm-cache benchmark: {os.cpu_count()} cores, wrk -t1 -c{args.connections}, {args.rounds} rounds of "
          f"{args.seconds} s, {args.body_kb} KB request bodies, {args.entries} entries in the cache (median round)\n")
    print(f"| {'scenario':<36} | {'req/s':>6} | {'min-max req/s':>13} | {'p50 ms':>6} | {'p99 ms':>6} | "
          f"{'proxy CPU/req':>13} | {'loop lag p99/max ms':>19} | {'errors':>6} |")
    print(f"|{'-' * 38}|{'-' * 8}|{'-' * 15}|{'-' * 8}|{'-' * 8}|{'-' * 15}|{'-' * 21}|{'-' * 8}|")
    for name, r in results.items():
        spread = f"{r['spread'][0]:.0f}-{r['spread'][1]:.0f}"
        lag = f"{r['lag_p99_ms']:.1f} / {r['lag_max_ms']:.1f}"
        print(f"| {name:<36} | {r['rps']:>6.0f} | {spread:>13} | {r['p50_ms']:>6.2f} | {r['p99_ms']:>6.2f} "
              f"| {r['cpu_us']:>10.0f} us | {lag:>19} | {r['errors']:>6} |")
    print(f"\n| {'throughput ratio (median of rounds)':<36} | {'req/s':>6} | {'CPU':>6} | {'rounds min-max':>14} | "
          f"{'target':<16} |")
    print(f"|{'-' * 38}|{'-' * 8}|{'-' * 8}|{'-' * 16}|{'-' * 18}|")
    summary = {}
    for name, (top, bottom, target) in ratios.items():
        value, by_cpu, low, high = paired(rounds, top, bottom)
        summary[name] = {"rps": value, "cpu": by_cpu, "rounds": [low, high]}
        verdict = "" if target is None else (f">= {target:.0%}" + (" met" if value >= target else " missed"))
        spread = f"{low:.0%}-{high:.0%}"
        print(f"| {name:<36} | {value:>6.1%} | {by_cpu:>6.1%} | {spread:>14} | {verdict:<16} |")
    print("\nA ratio is taken in each round between two scenarios measured one after the other, and the median "
          "round's is shown\n(rounds min-max: how far single rounds strayed). CPU: the same from mitmdump's CPU time "
          "per request (all its threads;\nthe writer process is apart). Loop lag: how late a 5 ms timer on the "
          "proxy's event loop fired while the scenario ran;\na write stalling the loop would show here.")
    if ttfb:
        print(f"\nStreamed misses, one at a time (upstream: first event at once, the rest {STREAM_DELAY * 1000:.0f} "
              "ms later), median of 20:")
        for name, t in ttfb.items():
            print(f"  {name:<22} first event after {t['first_ms']:6.2f} ms, last after {t['last_ms']:7.2f} ms")
        print("  (bare mitmproxy buffers a response body until its end unless told to stream; llm-cache streams "
              "LLM event streams as they arrive)")
    if "miss, HTTP (llm-cache records)" in results:
        misses = results["miss, HTTP (llm-cache records)"]["requests"]
        print(f"\nmisses answered in the measured runs: {misses}; entries recorded by the miss runs (warm-ups "
              f"included): {recorded}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratios": summary, "recorded": recorded, "ttfb": ttfb},
                                        indent=2,
                                        default=str))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--upstream":
        serve_upstream(int(sys.argv[2]))
    else:
        main()
