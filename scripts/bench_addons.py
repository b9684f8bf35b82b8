"""The benchmark's references, in bare mitmproxy: with no option set this addon does nothing
(passthrough); with `bench_fixed_response=FILE` it answers every request from the request hook
with that file's bytes, the ceiling for any cache hit."""

from pathlib import Path

from mitmproxy import ctx, http


class BenchReference:
    def __init__(self) -> None:
        self.body: bytes | None = None

    def load(self, loader) -> None:
        loader.add_option("bench_fixed_response", str, "", "answer every request with this file's content")

    def configure(self, updated: set[str]) -> None:
        if "bench_fixed_response" in updated:
            path = ctx.options.bench_fixed_response
            self.body = Path(path).read_bytes() if path else None

    def request(self, flow: http.HTTPFlow) -> None:
        if self.body is not None and not flow.response:
            flow.response = http.Response.make(200, self.body, {"content-type": "application/json"})


addons = [BenchReference()]
