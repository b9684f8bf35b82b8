"""scripts/bench --hooks N: what one fresh miss costs the proxy inside its own process, without
mitmproxy's networking around it, and so without most of this machine's noise.

N misses of --body-kb chat bodies go through the addon's hooks (requestheaders, request,
responseheaders, response) under mitmproxy's test context, against a SQLite cache in a temporary
directory, each answered by a small completion and recorded. Flows are built first; the loop then
only runs the hooks. Reported: the hooks' time on the calling thread (median, quartiles) and the
process's CPU per miss, all threads included, from the first measured miss until every record has
been written (the writer process's own CPU is not included). Each recorded miss's answer waits
for its commit; here they are awaited together after the loop, so the hooks' time is the proxy's
work, not the writer's latency.

With --stream-events E each miss is instead a streamed request answered by an E-event chat stream
(scripts/_bench_streams.chat), fed to the addon's stream tee one event per chunk as mitmproxy
would: the event-loop time a streamed miss costs, whatever its length (the stream's check and
assembly run in the writer process).

An A/B of two checkouts is this, run alternately in each, a few times.
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(count: int, body_kb: int, events: int = 0) -> None:
    from _bench import COMPLETION_BYTES as completion
    from _bench import chat_body
    from _bench_streams import chat as chat_stream
    from mitmproxy import http
    from mitmproxy.test import taddons, tflow, tutils

    import addon  # scripts/_bench.py put the repository on the path

    base = chat_body(body_kb, "bench hooks UNIQUE", stream=bool(events))
    stream = chat_stream(events) if events else b""
    chunks = [event + b"\n\n" for event in stream.split(b"\n\n") if event]

    def flow(n: int) -> tuple[http.HTTPFlow, http.Response]:
        body = base.replace(b"UNIQUE", b"%d" % n)
        headers = http.Headers([(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                                (b"authorization", b"Bearer sk-bench"), (b"content-length", b"%d" % len(body))])
        request = tutils.treq(method=b"POST", scheme=b"http", host="127.0.0.1", port=8000,
                              path=b"/v1/chat/completions", headers=headers, content=body)
        made = tflow.tflow(req=request)
        if events:
            response = tutils.tresp(status_code=200, content=b"", headers=http.Headers(
                [(b"content-type", b"text/event-stream")]))
        else:
            response = tutils.tresp(status_code=200, content=completion, headers=http.Headers(
                [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(completion))]))
        return made, response

    async def run() -> None:
        cache = addon.LLMCache()
        with taddons.context(cache) as tctx, tempfile.TemporaryDirectory() as confdir:
            tctx.configure(cache, confdir=confdir)
            warm = max(count // 10, 50)
            flows = [flow(n) for n in range(warm + count)]
            times = []
            answers = []  # each recorded miss's answer waits for its commit: awaited together, after
            for n, (miss, response) in enumerate(flows):
                if n == warm:
                    cpu_start = time.process_time()
                started = time.thread_time_ns()
                cache.requestheaders(miss)
                cache.request(miss)
                miss.response = response
                cache.responseheaders(miss)
                if events:  # mitmproxy hands the stream callable each chunk, then b""
                    for chunk in chunks:
                        miss.response.stream(chunk)
                    miss.response.stream(b"")
                answers.append(cache.response(miss))
                times.append(time.thread_time_ns() - started)
            await asyncio.gather(*[answer for answer in answers if answer is not None])
            if events:  # a stream's outcome comes when the writer has checked and committed it
                cache.store.flush()
                while any(miss.metadata["llm_cache"].get("store", "").startswith("queued") for miss, _ in flows):
                    await asyncio.sleep(0.01)
            cpu = (time.process_time() - cpu_start) / count  # records queued for the writer are part of it
            for miss, _ in flows:
                if miss.metadata["llm_cache"].get("store") != "stored":
                    raise RuntimeError(f"a miss was not recorded: {miss.metadata['llm_cache']}")
            cache.done()
        ordered = sorted(times[warm:])
        quartile = len(ordered) // 4
        what = f"streamed ({events}-event, {len(stream) // 1024} KB)" if events else "JSON"
        print(f"{count} fresh {body_kb} KB {what} misses through the addon's hooks ({os.path.basename(ROOT)}): "
              f"hooks {ordered[len(ordered) // 2] / 1000:.0f} us median on the loop's thread "
              f"({ordered[quartile] / 1000:.0f}-{ordered[-quartile] / 1000:.0f} us quartiles); "
              f"process CPU {cpu * 1e6:.0f} us per miss, all threads")

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit("run as scripts/bench --hooks N")
