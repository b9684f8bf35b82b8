"""One proxy's cache: its settings, its store, the requests in flight and what it keeps between
hooks. addon.py holds one; the hook steps (llm_cache.serving, llm_cache.recording) take it."""

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import http

from llm_cache import embedders, keys, policy
from llm_cache.credentials import credentials
from llm_cache.failures import FailureLog
from llm_cache.flights import Flights
from llm_cache.near_misses import NearMisses
from llm_cache.records import Record
from llm_cache.secrets import SecretScanner
from llm_cache.stores import Stores
from llm_cache.upstream_keys import UpstreamKeys


class Runtime:
    def __init__(self, updated: Callable[[http.HTTPFlow], None] = lambda flow: None) -> None:
        """`updated(flow)` tells mitmproxy that a flow changed after its hooks ran (its comment)."""
        self.settings = policy.Settings()
        self.updated = updated
        self.failures = FailureLog()
        self.near_misses = NearMisses(updated, lambda: self.loop)
        self.stores = Stores(self.failures, self.near_misses.found, lambda: self.settings)
        self.memo = _memo_for(self.settings)
        self.flights = Flights()  # identical fresh requests in flight
        self.upstream_keys = UpstreamKeys()  # real keys put into requests that go upstream
        self.stale: dict[str, Record] = {}  # flow id -> expired entry, for stale-if-error
        self.loop: asyncio.AbstractEventLoop | None = None  # mitmproxy's, once it runs
        self.proxy: str | None = None  # this proxy's URL, for the tiers' own calls through it
        self.ca_file: str | None = None  # the CA it signs HTTPS with
        self._embedder: embedders.Embedder | None = None
        self._seen: dict[str, int] = {}  # identical requests this run, per key (llm_cache_samples > 1)

    def configure(self, settings: policy.Settings) -> None:
        if _memo_config(settings) != _memo_config(self.settings):
            self.memo = _memo_for(settings)
        self.settings = settings
        if settings.semantic is not None and settings.semantic.embedder == embedders.LOCAL:
            threading.Thread(target=embedders.preload, name="llm-cache-embedder", daemon=True).start()
        if self.stores.store is not None:
            self.stores.store.set_rules(settings.key_rules)
            self.stores.store.set_upkeep(self.stores.upkeep())

    def embedder(self) -> embedders.Embedder:
        """The semantic tier's embedder (llm_cache.embedders), as llm_cache_semantic_embedder says."""
        semantic = self.settings.semantic
        assert semantic is not None
        name = embedders.name_of(semantic.embedder, semantic.model)
        if self._embedder is None or self._embedder.name != name:
            self._embedder = embedders.make(semantic.embedder, semantic.model, self.proxy, self.ca_file)
        return self._embedder

    def running(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.create_task(self.flights.relay.start())

    def done(self) -> None:
        self.stores.done()
        self.flights.relay.close()

    def nth(self, key: str) -> int:
        """How many identical requests this run has seen before this one (only counted for samples)."""
        if self.settings.samples == 1:
            return 0
        nth = self._seen.get(key, 0)
        self._seen[key] = nth + 1
        return nth

    def partition(self, namespace: str, fields: list[tuple[str, str]], query: Sequence[tuple[str, str]]) -> str:
        """Which part of the cache a request belongs to: its namespace, and in the credential scope
        an HMAC of every credential it carries (the secret lives in the cache, so the HMAC cannot be
        reversed)."""
        parts = [f"ns:{namespace}"] if namespace else []
        if self.settings.scope is policy.Scope.CREDENTIAL and (store := self.stores.get()) is not None:
            parts.append(f"cred:{store.credential_tag(credentials(fields, query))}")
        return "|".join(parts)


def _memo_config(settings: policy.Settings) -> tuple[Any, bool]:
    """What the request facts depend on: the key rules, and whether bodies are scanned for secrets
    (only when they may be recorded)."""
    return settings.key_rules, settings.scan_secrets and settings.mode.records


def _memo_for(settings: policy.Settings) -> keys.BodyMemo:
    rules, scan = _memo_config(settings)
    return keys.BodyMemo(rules=rules, scanner=SecretScanner() if scan else None)
