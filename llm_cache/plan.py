"""What the cache does with one recognised request: the proxy's settings and the request's own
controls, combined once into a Plan. Pure data in, pure data out."""

from collections.abc import Mapping
from typing import NamedTuple

from llm_cache.controls import Controls
from llm_cache.keys import BodyFacts
from llm_cache.policy import Mode, Settings, Temperature
from llm_cache.records import Record


class Plan(NamedTuple):
    bypass: str | None  # the request passes through untouched by the cache, for this reason
    look_up: bool  # may be answered from the cache
    skip_store: str | None  # a miss is not recorded, for this reason (None: record it)
    replay_only: bool  # never contact the upstream: a miss fails loudly (answers.replay_miss)


def bypass(reason: str) -> Plan:
    return Plan(bypass=reason, look_up=False, skip_store=reason, replay_only=False)


def plan_for(settings: Settings, controls: Controls, facts: BodyFacts, *, family: str, host: str) -> Plan:
    reason = controls.bypass or facts.bypass or settings.refuses(host, facts.model, family)
    if reason:
        return bypass(reason)
    if settings.temperature is Temperature.DETERMINISTIC and not facts.deterministic:
        return bypass("llm_cache_temperature is deterministic and the request has no temperature 0 or seed")
    replay_only = settings.mode is Mode.REPLAY or controls.only_if_cached
    skip_store = None
    if not settings.mode.records:
        skip_store = f"llm_cache_mode is {settings.mode}"
    elif controls.only_if_cached:
        skip_store = "Cache-Control: only-if-cached"
    elif controls.no_store:
        skip_store = "Cache-Control: no-store"
    look_up = (settings.mode.looks_up or controls.only_if_cached) and not controls.no_cache
    return Plan(bypass=None, look_up=look_up, skip_store=skip_store, replay_only=replay_only)


def is_expired(record: Record, now: float, settings: Settings, controls: Controls,
               versions: Mapping[str, str] | None = None) -> bool:
    """An entry past the proxy's TTL, its own TTL, or the request's TTL or max-age, or recorded under
    another version of a dependency than the current one, is not served (except as stale-if-error)."""
    if record.deps and versions is not None and any(versions.get(name, "") != version for name, version in record.deps):
        return True
    age = now - record.created_at
    if record.expires_at is not None and now >= record.expires_at:
        return True
    if settings.ttl and age >= settings.ttl:
        return True
    if controls.ttl and age >= controls.ttl:
        return True
    return controls.max_age is not None and age > controls.max_age
