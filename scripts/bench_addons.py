"""The benchmark's instruments, loaded into every proxy it measures.

- With no option set this addon does nothing: bare mitmproxy, plain passthrough.
- `bench_fixed_response=FILE` answers every request from the request hook with that file's bytes,
  the ceiling for any cache hit. A request whose body names `bench-case:NAME` is answered with
  FILE's sibling `NAME` instead (an event stream when NAME ends in .sse): the ceiling for each
  stream size.
- `bench_loop_lag=FILE` measures how late a 5 ms timer on the event loop fires, all run long, and
  writes (time, lag) pairs to FILE on shutdown: a stalled loop shows up as lag.
"""

import asyncio
import time
from pathlib import Path

import orjson
from mitmproxy import ctx, http

PERIOD = 0.005


class BenchReference:
    def __init__(self) -> None:
        self.body: bytes | None = None
        self.cases: dict[bytes, tuple[bytes, str]] = {}  # bench-case name -> (body, content type)
        self.lags: list[tuple[float, float]] = []
        self.probe: asyncio.Task | None = None

    def load(self, loader) -> None:
        loader.add_option("bench_fixed_response", str, "", "answer every request with this file's content")
        loader.add_option("bench_loop_lag", str, "", "write the event loop's lag samples to this file")

    def configure(self, updated: set[str]) -> None:
        if "bench_fixed_response" in updated:
            path = ctx.options.bench_fixed_response
            self.body = Path(path).read_bytes() if path else None
            self.cases = {}
            if path:
                for case in Path(path).parent.glob("*.sse"):
                    self.cases[case.name.encode()] = (case.read_bytes(), "text/event-stream")

    def running(self) -> None:
        if ctx.options.bench_loop_lag and self.probe is None:
            self.probe = asyncio.get_running_loop().create_task(self._measure())

    async def _measure(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(PERIOD)
            self.lags.append((time.time(), time.perf_counter() - start - PERIOD))

    def done(self) -> None:
        if ctx.options.bench_loop_lag:
            Path(ctx.options.bench_loop_lag).write_bytes(orjson.dumps(self.lags))

    def request(self, flow: http.HTTPFlow) -> None:
        if self.body is not None and not flow.response:
            body, content_type = self.body, "application/json"
            content = flow.request.raw_content or b""
            if (at := content.find(b"bench-case:")) != -1:
                name = content[at + 11:content.index(b'"', at)]
                body, content_type = self.cases.get(name, (body, content_type))
            flow.response = http.Response.make(200, body, {"content-type": content_type})


addons = [BenchReference()]
