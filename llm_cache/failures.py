"""The failure pole, decided once: a storage or parsing failure never breaks the user's traffic.
The flow passes through as if the cache were absent, and the failure is logged in one clear line,
repeated at most once a minute per kind so a dead database does not flood the log."""

import logging
import time

logger = logging.getLogger("llm_cache")


class FailureLog:
    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}

    def passed_through(self, what: str, error: BaseException | str,
                       then: str = "passing the request through uncached") -> None:
        """`then`: what becomes of the request instead (a tier that fails leaves an exact miss)."""
        now = time.monotonic()
        if now - self._last.get(what, -self._interval) >= self._interval:
            self._last[what] = now
            logger.warning("llm-cache: %s failed (%s); %s", what, error, then)
