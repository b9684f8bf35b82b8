"""What a client's environment needs to go through the proxy and trust mitmproxy's CA, for every
client the README names: Python's (httpx, requests, the SDKs), curl, Node's (`fetch` needs
NODE_USE_ENV_PROXY), Rust and Go binaries. The start line prints it; the pytest plugin sets it."""


def environment(proxy_url: str, ca: str) -> dict[str, str]:
    return {"HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url, "https_proxy": proxy_url, "http_proxy": proxy_url,
            "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca, "CURL_CA_BUNDLE": ca, "NODE_EXTRA_CA_CERTS": ca,
            "NODE_USE_ENV_PROXY": "1"}


CLEARED = ("NO_PROXY", "no_proxy")  # a host named there would not go through the proxy
