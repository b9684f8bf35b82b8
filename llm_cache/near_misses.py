"""Near misses, told to the user: a newly recorded entry that came close to a stored one (the
writer finds it) goes into its flow's comment in mitmweb, and into the log at most once every
LOG_EVERY seconds, saying how many it left out: recording a thousand similar requests is not a
thousand log lines."""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from mitmproxy import http

from llm_cache.explain import NearMiss

logger = logging.getLogger(__name__)

FLOWS = 256  # recorded flows kept for the comment their near miss adds
LOG_EVERY = 5.0  # seconds


class NearMisses:
    def __init__(self, updated: Callable[[http.HTTPFlow], None],
                 loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        """`updated(flow)` tells mitmproxy (and mitmweb) that a flow's comment changed; `loop()` is
        mitmproxy's event loop once it runs."""
        self._loop = loop
        self._updated = updated
        self._flows: OrderedDict[str, http.HTTPFlow] = OrderedDict()  # entry key -> its flow, the newest
        self._logged = -LOG_EVERY  # when a near miss was last logged
        self._unsaid = 0

    def remember(self, key: str, flow: http.HTTPFlow) -> None:
        """The flow of a miss being recorded, for its near-miss comment."""
        self._flows[key] = flow
        while len(self._flows) > FLOWS:
            self._flows.popitem(last=False)

    def found(self, miss: NearMiss) -> None:
        """The writer found one (called on a helper thread)."""
        now = time.monotonic()
        if now >= self._logged + LOG_EVERY:
            unsaid = f" ({self._unsaid} more since the last one: see mitmweb's comments)" if self._unsaid else ""
            logger.info("llm-cache: %s (llmcache.explain %s gives a rule that makes it a hit)%s", miss.describe(),
                        miss.key[:12], unsaid)
            self._logged, self._unsaid = now, 0
        else:
            self._unsaid += 1
        loop = self._loop()
        if loop is not None:
            loop.call_soon_threadsafe(self._comment, miss)

    def _comment(self, miss: NearMiss) -> None:
        flow = self._flows.pop(miss.key, None)
        if flow is not None:
            flow.comment += f"\n{miss.describe()}"
            self._updated(flow)
