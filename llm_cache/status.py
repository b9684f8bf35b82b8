"""The response headers that say what the cache did with a request.

Always `X-LLM-Cache: HIT | HIT-SEMANTIC | SYNTHESISED | STALE | MISS | BYPASS`, with `-Key`, `-Age`,
`-Similarity`, `-Store` or `-Reason` where they apply. With `llm_cache_compat_headers`, also the
headers of the caches users switch from, so tools built for those keep working:
`X-Computer-Use-Cache` and `X-Code-Model-Cache` (HIT / MISS / BYPASS, with `-Key` and `-Store`) and
a Cachecore-style `X-Cache` (HIT_L1 | HIT_L1_STALE | HIT_L2 | MISS | BYPASS) with `X-Cache-Age`.
"""

from enum import StrEnum
from typing import Any


class Status(StrEnum):
    HIT = "HIT"
    HIT_SEMANTIC = "HIT-SEMANTIC"  # the answer of a stored request whose last turn says the same (llm_cache.semantic)
    SYNTHESISED = "SYNTHESISED"  # written by a model from stored answers to similar requests (llm_cache.synthesis)
    STALE = "STALE"  # an expired entry served because the upstream failed (stale-if-error)
    MISS = "MISS"
    BYPASS = "BYPASS"
    REPLAY_MISS = "REPLAY_MISS"  # not in the cache, and not sent upstream (replay, only-if-cached): answered 400/504

    @property
    def header(self) -> str:
        """The X-LLM-Cache value: a replay miss is a MISS to the client."""
        return "MISS" if self is Status.REPLAY_MISS else self.value


_SEED_HEADERS = ("X-Computer-Use-Cache", "X-Code-Model-Cache")
_STATUS_PREFIXES = ("x-llm-cache", "x-computer-use-cache", "x-code-model-cache")
_STATUS_NAMES = frozenset({"x-cache", "x-cache-age"})


def is_status_header(name: str) -> bool:
    """Headers that say what a cache did with one request: never stored with an entry, and added
    fresh to every answer."""
    name = name.lower()
    return name in _STATUS_NAMES or name.startswith(_STATUS_PREFIXES)


_X_CACHE = {Status.HIT: "HIT_L1", Status.STALE: "HIT_L1_STALE", Status.HIT_SEMANTIC: "HIT_L2",
            Status.SYNTHESISED: "MISS", Status.MISS: "MISS", Status.BYPASS: "BYPASS", Status.REPLAY_MISS: "MISS"}
_SEED_STATUS = {Status.STALE: "HIT", Status.HIT_SEMANTIC: "HIT", Status.SYNTHESISED: "MISS"}


def status_headers(
    status: Status,
    *,
    key: str | None = None,
    age: int | None = None,
    reason: str | None = None,
    similarity: float | None = None,
    compat: bool = False,
) -> list[tuple[str, str]]:
    headers = [("X-LLM-Cache", status.header)]
    if key:
        headers.append(("X-LLM-Cache-Key", key))
    if age is not None:
        headers.append(("X-LLM-Cache-Age", str(age)))
    if similarity is not None:
        headers.append(("X-LLM-Cache-Similarity", f"{similarity:.4f}"))
    if reason:
        headers.append(("X-LLM-Cache-Reason", reason))
    if compat:
        seed_status = _SEED_STATUS.get(status, status.header)
        for name in _SEED_HEADERS:
            headers.append((name, seed_status))
            if key:
                headers.append((f"{name}-Key", key))
        headers.append(("X-Cache", _X_CACHE[status]))
        if age is not None:
            headers.append(("X-Cache-Age", str(age)))
    return headers


def stats_table(stats: dict[str, Any]) -> list[list[str]]:
    """llmcache.stats as a table (mitmweb and the console show rows): entries, hits and bytes per
    endpoint family and in all, then what the writer did this run."""
    rows = [["family", "entries", "hits", "bytes"]]
    for family, counts in sorted(stats["families"].items()):
        rows.append([family, str(counts["entries"]), str(counts["hits"]), str(counts["bytes"])])
    total = sum(counts["bytes"] for counts in stats["families"].values())
    rows.append(["all", str(stats["entries"]), str(stats["hits"]), str(total)])
    counted = stats["counted"]
    if counted["hit_rate"] is not None:
        rate = f"{counted['hit_rate']:.1%}"
        rows.append(["hit rate", rate, f"{counted['hits']} hits", f"{counted['misses']} misses"])
        rows.append(["tokens saved", f"input {counted['input_tokens_saved']}",
                     f"output {counted['output_tokens_saved']}", ""])
    writes = stats["writes"]
    rows.append(["this run", f"stored {writes['stored']}", f"lost {writes['lost']}", f"waiting {writes['waiting']}"])
    if writes.get("retrying"):
        rows.append(["retrying", writes["retrying"], "", ""])
    for cause, count in sorted(writes.get("lost_by_cause", {}).items()):
        rows.append(["lost", cause, str(count), ""])
    return rows


def store_headers(outcome: str, *, compat: bool = False) -> list[tuple[str, str]]:
    """What happened to a miss: "stored" or "skipped: <reason>"."""
    headers = [("X-LLM-Cache-Store", outcome)]
    if compat:
        headers += [(f"{name}-Store", outcome) for name in _SEED_HEADERS]
    return headers
