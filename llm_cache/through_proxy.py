"""The cache's own calls (an embeddings endpoint, a synthesising model), sent through this proxy:
cached like any other call, seen in mitmweb, and given the real key by llm_cache_upstream_keys.
They ask for the exact tier alone (X-LLM-Cache-Tiers: exact): a synthesising call must not itself
be answered by the semantic or synthesis tier. Synchronous (urllib): the tiers call it on a thread,
off the event loop."""

import asyncio
import json
import ssl
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TIMEOUT = 30.0  # seconds an endpoint may take

# Their own threads: a call through this proxy waits for the proxy, which needs the loop's default
# executor to resolve the upstream's name; calls holding every one of its threads would wait forever.
_CALLS = ThreadPoolExecutor(16, thread_name_prefix="llm-cache-call")


async def call[T](work: Callable[..., T], *args: Any) -> T:
    """`work(*args)`, which calls through the proxy, on the calls' own threads."""
    return await asyncio.get_running_loop().run_in_executor(_CALLS, work, *args)


def post_json(url: str, body: dict[str, Any], proxy: str | None, ca_file: str | None) -> Any:
    """POST JSON through the proxy (`proxy`: its URL; `ca_file`: the CA it signs HTTPS with) and
    parse the answer; raises on any failure (an HTTP error status included)."""
    handlers: list[Any] = [urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {})]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "x-llm-cache-tiers": "exact"})
    with urllib.request.build_opener(*handlers).open(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())
