"""The cache's database over the proxy's life: opened before the proxy serves (a local SQLite file)
or on a thread of its own (a server: an unreachable one never holds the event loop), opened again
every REOPEN_AFTER seconds while it is unavailable, and read across the network on threads of its
own within llm_cache_lookup_timeout_ms. While there is no store, LLM calls pass through."""

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cache_models
from llm_cache import writes
from llm_cache.explain import NearMiss
from llm_cache.failures import FailureLog
from llm_cache.policy import Settings

logger = logging.getLogger(__name__)

REOPEN_AFTER = 30.0  # seconds between attempts to open a database that was unavailable


class Unavailable(Exception):
    """The cache database cannot be used now (a command's error)."""


class Stores:
    def __init__(self, failures: FailureLog, on_near_miss: Callable[[NearMiss], None],
                 settings: Callable[[], Settings]) -> None:
        """`settings()`: the proxy's current settings (key rules, write retry, lookup limit, upkeep)."""
        self.store: cache_models.CacheStore | None = None
        self.url = ""
        self._settings = settings
        self.reopen_at = 0.0
        self._failures = failures
        self._on_near_miss = on_near_miss
        self._opening = False  # a thread is opening the store
        self._reader: ThreadPoolExecutor | None = None  # lookups in a database across the network

    def use(self, url: str) -> None:
        """Open this database instead of the current one (if it is another)."""
        if url == self.url:
            return
        self.close()
        self.url = url
        if url.startswith("sqlite:"):
            self._open()  # a local file, opened before the proxy serves
        else:
            self.get()  # a server: opened on a thread, the proxy passes requests through meanwhile

    def get(self) -> cache_models.CacheStore | None:
        """The store, or None while it is unavailable (and a thread opening it again, when it is time)."""
        if self.store is None and self.url and not self._opening and time.monotonic() >= self.reopen_at:
            self._opening = True
            threading.Thread(target=self._open, name="llm-cache-open", daemon=True).start()
        return self.store

    def require(self) -> cache_models.CacheStore:
        store = self.get()
        if store is None:
            raise Unavailable(f"the cache database {self.redacted} is unavailable")
        return store

    @property
    def redacted(self) -> str:
        return cache_models.redact_url(self.url)

    async def off_loop[T](self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` on a thread: for a database across the network one of the lookups' own,
        within the lookup timeout (`far`); for SQLite the loop's default executor (a thread has its
        own connection)."""
        if self.store is not None and self.store.remote:
            return await self.far(work, *args)
        return await asyncio.to_thread(work, *args)

    async def far[T](self, read: Callable[..., T], *args: Any) -> T:
        """`read(*args)` on the lookup threads, within llm_cache_lookup_timeout_ms (raises TimeoutError)."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(2, thread_name_prefix="llm-cache-lookup")
        running = asyncio.get_running_loop().run_in_executor(self._reader, read, *args)
        return await asyncio.wait_for(running, self._settings().lookup_timeout_ms / 1000)

    def _open(self) -> None:
        try:
            settings = self._settings()
            self.store = cache_models.CacheStore(self.url, settings.key_rules, self._on_near_miss,
                                                 write_retry=settings.write_retry)
            self.store.set_upkeep(self.upkeep())
        except Exception as e:
            self.store = None
            self.reopen_at = time.monotonic() + REOPEN_AFTER
            self._failures.passed_through(f"opening the cache database {self.redacted}", e)
        else:
            logger.info("llm-cache: cache database %s", self.redacted)
        finally:
            self._opening = False

    def upkeep(self) -> writes.Upkeep:
        """How the writer keeps the cache bounded, from the settings."""
        settings = self._settings()
        return writes.Upkeep(max_size=settings.max_size, ttl=settings.ttl,
                                   delete_expired=not settings.stale_if_error)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def done(self) -> None:
        self.close()
        if self._reader is not None:
            self._reader.shutdown(wait=False, cancel_futures=True)
