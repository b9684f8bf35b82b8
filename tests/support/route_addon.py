"""Test-only mitmproxy addon: sends every upstream connection to the local fake provider, so a
client can call https://api.openai.com/... through the proxy and never leave 127.0.0.1."""

from mitmproxy import ctx
from mitmproxy.proxy import server_hooks


class RouteToFake:
    def load(self, loader) -> None:
        loader.add_option("fake_upstream_https", str, "", "HOST:PORT that every TLS upstream connection goes to")
        loader.add_option("fake_upstream_http", str, "", "HOST:PORT that every plain upstream connection goes to")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if not data.server.tls and data.server.address and data.server.address[0] == "127.0.0.1":
            return  # plain HTTP to this machine: the fake itself, or llm-cache's relay of a stream in flight
        target = ctx.options.fake_upstream_https if data.server.tls else ctx.options.fake_upstream_http
        if target:
            host, port = target.rsplit(":", 1)
            data.server.address = (host, int(port))


addons = [RouteToFake()]
