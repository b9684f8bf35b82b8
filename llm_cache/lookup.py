"""Finding the entry that answers a request, among up to `llm_cache_samples` recorded responses.

Sample 0 is stored under the request's key, sample k under a key derived from it. Within one proxy
run the n-th identical request wants sample n: it is answered from it when stored, recorded as it
when it is missing and the proxy records, and otherwise wraps around the samples that are stored,
so an agent's retry loop on a bad answer replays as it ran.
"""

import hashlib
from collections.abc import Callable
from typing import NamedTuple

from llm_cache.records import Record


class Found(NamedTuple):
    fresh: Record | None  # answer with this
    stale: Record | None  # an expired entry: refetched, but served if the upstream fails (stale-if-error)
    sample: int  # which sample a miss is recorded as

    def key_of(self, key: str) -> str:
        """Where a miss is recorded."""
        return entry_key(key, self.sample)


def entry_key(key: str, sample: int) -> str:
    return key if sample == 0 else hashlib.sha256(f"{key}#{sample}".encode()).hexdigest()


def find_entry(
    find: Callable[[str], Record | None],
    key: str,
    *,
    nth: int,
    samples: int,
    can_record: bool,
    is_expired: Callable[[Record], bool],
) -> Found:
    """`nth`: how many identical requests this run has seen before this one."""
    wanted = nth if samples > 1 else 0
    record = None
    if wanted < samples:
        record = find(entry_key(key, wanted))
        if record is None and can_record:
            return Found(None, None, wanted)
    if record is None:
        stored: list[Record] = []
        for sample in range(samples):
            found = find(entry_key(key, sample))
            if found is None:
                break
            stored.append(found)
        if not stored:
            return Found(None, None, 0)
        wanted %= len(stored)
        record = stored[wanted]
    if is_expired(record):
        return Found(None, record, wanted)
    return Found(record, None, wanted)
