"""The writer process's side of the store: the batch function it runs (entries, hit and miss counts,
rejected entries, dependency versions, in one transaction), the cache's upkeep (expiry, eviction), and
the near misses of new entries. cache_models.CacheStore starts it through llm_cache.writer."""

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import orjson
import peewee
from peewee import chunked, fn

from cache_models import (
    ENTRY_SIZE,
    CacheCount,
    CacheDep,
    CacheEntry,
    CacheVector,
    nearest_stored,
    open_database,
    redact_url,
)
from llm_cache import explain
from llm_cache.endpoints import Family
from llm_cache.keys import parse_json
from llm_cache.normalise import DEFAULT_RULES, KeyRules, canonical_form
from llm_cache.records import Embedded, NotStorable, Record, derived_columns
from llm_cache.writer import Later, Retry
from llm_cache.writes import (
    EVICT_TO,
    UPKEEP_EVERY,
    DepVersions,
    HitCounts,
    MissCounts,
    NotComplete,
    Rejected,
    Removed,
    Rules,
    SemanticReports,
    Skipped,
    Upkeep,
    first_line,
    sqlite_inode,
    transient_cause,
    utc_day,
)

logger = logging.getLogger(__name__)


def row_of(record: Record) -> dict[str, Any]:
    return {
        "key": record.key,
        "family": record.family,
        "status": record.status,
        "is_stream": record.is_stream,
        "created_at": record.created_at,
        "host": record.host,
        "model": record.model,
        "hit_count": 0,  # for a new entry; an overwritten entry keeps its count
        "expires_at": record.expires_at,
        "sample": record.sample,
        "tags": "," + ",".join(record.tags) + "," if record.tags else None,
        "deps": orjson.dumps(record.deps).decode() if record.deps else None,
        "namespace": record.namespace or None,
        "body": record.body,
        **derived_columns(record),
    }


def vector_rows(records: Sequence[Record], stored: set[str]) -> list[dict[str, Any]]:
    """The semantic tier's rows of the entries this batch stores."""
    return [vector_row(record.key, record.semantic, record.created_at)
            for record in records if record.semantic is not None and record.key in stored]


def vector_row(key: str, embedded: Embedded, created_at: float) -> dict[str, Any]:
    """A cache_vector row: an entry's turn and its embedding, with no report yet."""
    return {"key": key, "context": embedded.context, "embedder": embedded.embedder, "reports": 0,
            "created_at": created_at, "text": embedded.text, "vector": embedded.vector}


def counts_of(hits: dict[str, tuple[int, float]], misses: dict[tuple[str, str, str, str], int]) -> list[dict[str, Any]]:
    """CacheCount rows for a batch: each hit under its entry's family, host and model, with the
    tokens its entry's usage says it saved."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def row(where: tuple[str, str, str, str]) -> dict[str, Any]:
        return rows.setdefault(where, dict(zip(("day", "family", "host", "model"), where, strict=True),
                                           hits=0, misses=0, input_tokens_saved=0, output_tokens_saved=0))

    for where, count in misses.items():
        row(where)["misses"] += count
    for batch in chunked(list(hits), 500):
        entries = cast(list[tuple[str, str, str, str, int | None, int | None]], list(
            CacheEntry.select(CacheEntry.key, CacheEntry.family, CacheEntry.host, CacheEntry.model,
                              CacheEntry.input_tokens, CacheEntry.output_tokens)
            .where(CacheEntry.key.in_(batch))
            .tuples()))
        for key, family, host, model, input_tokens, output_tokens in entries:
            count, when = hits[key]
            counted = row((utc_day(when), family, host, model))
            counted["hits"] += count
            counted["input_tokens_saved"] += count * (input_tokens or 0)
            counted["output_tokens_saved"] += count * (output_tokens or 0)
    return list(rows.values())


def add_counts(rows: list[dict[str, Any]]) -> None:
    # EXCLUDED: the row the upsert would have inserted, added to the one there is.
    added = {column: getattr(CacheCount, column) + getattr(peewee.EXCLUDED, column)
             for column in ("hits", "misses", "input_tokens_saved", "output_tokens_saved")}
    for batch in chunked(rows, 100):
        (CacheCount
         .insert_many(batch)
         .on_conflict(conflict_target=[CacheCount.day, CacheCount.family, CacheCount.host, CacheCount.model],
                      update=added)
         .execute())


def upkeep(rules: Upkeep, now: float) -> Removed:
    """Delete expired entries (unless stale-if-error may serve them), then, over max_size, the least
    recently used (by last hit, else by creation) until the cache is EVICT_TO of it. Runs in the writer."""
    expired = 0
    if rules.delete_expired:
        gone = CacheEntry.expires_at < now
        if rules.ttl:
            gone |= CacheEntry.created_at < now - rules.ttl
        expired = CacheEntry.delete().where(gone).execute()
    evicted = evicted_bytes = 0
    if rules.max_size:
        total = CacheEntry.select(fn.SUM(ENTRY_SIZE)).scalar() or 0
        if total > rules.max_size:
            excess = total - int(rules.max_size * EVICT_TO)
            oldest = (CacheEntry
                      .select(CacheEntry.key, ENTRY_SIZE)
                      .order_by(fn.COALESCE(CacheEntry.last_hit_at, CacheEntry.created_at))
                      .tuples()
                      .iterator())
            keys = []
            for key, size in oldest:
                if evicted_bytes >= excess:
                    break
                keys.append(key)
                evicted_bytes += size
            for batch in chunked(keys, 500):
                evicted += CacheEntry.delete().where(CacheEntry.key.in_(batch)).execute()
    # Vectors whose entry is gone (expired, evicted, rejected, invalidated, deleted by the command line).
    CacheVector.delete().where(CacheVector.key.not_in(CacheEntry.select(CacheEntry.key))).execute()
    return Removed(expired, evicted, evicted_bytes)


def near_miss_of(record: Record, rules: KeyRules) -> list[explain.NearMiss]:
    """A newly stored entry's near miss, as a writer note (none when it has no close neighbour).
    Run by the writer after the batch is acknowledged, and only while no other write waits."""
    try:
        family = Family(record.family)
        body = canonical_form(parse_json(record.request_body), rules, family=family, profile=record.profile)
        request = {"profile": record.profile, "user_agent": record.user_agent, "body": body}
        nearest = nearest_stored(record.key, record.created_at, family, record.host, record.model, request, rules)
    except Exception as e:  # explaining is a courtesy: it never costs an entry its place
        logger.debug("llm-cache: no near miss for %s: %s", record.key[:12], e)
        return []
    return [] if nearest is None else [nearest[0]]


def open_writer(url: str, rules: KeyRules = DEFAULT_RULES) -> Callable[[Sequence[Any]], list[Any]]:
    """Runs in the writer process: connect, and return the batch writer. Besides writing, it notes
    entries it could not store (Skipped) and the near misses of the entries it creates
    (explain.NearMiss). A failure that may pass raises writer.Retry: the batch is tried again.

    A SQLite file deleted or replaced under it (by hand, by a cleanup job) is noticed before each
    batch: the writer then creates it anew and says so, instead of writing into a file no one can
    open any more."""
    state: dict[str, Any] = {"db": open_database(url), "rules": rules, "inode": sqlite_inode(url)}
    fields = [CacheEntry._meta.fields[name] for name in CacheEntry._meta.sorted_field_names if name != "last_hit_at"]
    kept_on_overwrite = [field for field in fields if field.name not in ("key", "hit_count")]

    def write(ops: Sequence[Any]) -> list[Any]:
        notes: list[Any] = []
        for op in ops:
            if isinstance(op, Rules):
                state["rules"] = op.rules
            elif isinstance(op, Upkeep):
                state["upkeep"], state["upkept"] = op, float("-inf")  # a new bound applies with this batch
        if sqlite_inode(url) != state["inode"]:
            _reopen(state, url)
            notes.append(f"the cache file {redact_url(url)} was deleted or replaced; writing to a new one")
            state["inode"] = sqlite_inode(url)
        records = list({op.key: op for op in ops if isinstance(op, Record)}.values())
        rows = []
        for record in records:
            try:
                rows.append(row_of(record))
            except NotStorable as e:
                notes.append(NotComplete(record.key, str(e)))
            except Exception as e:  # one odd entry must not cost the others their place
                notes.append(Skipped(record.key, f"it cannot be stored ({e})"))
        hits: dict[str, tuple[int, float]] = {}
        misses: dict[tuple[str, str, str, str], int] = {}
        rejected: set[str] = set()
        reports: dict[str, int] = {}
        versions: dict[str, str] = {}
        for op in ops:
            if isinstance(op, HitCounts):
                for key, (count, when) in op.items():
                    hits[key] = (hits.get(key, (0, 0.0))[0] + count, when)
            elif isinstance(op, MissCounts):
                for where, count in op.items():
                    misses[where] = misses.get(where, 0) + count
            elif isinstance(op, Rejected):
                rejected.update(op.keys)
            elif isinstance(op, SemanticReports):
                for key in op.keys:
                    reports[key] = reports.get(key, 0) + 1
            elif isinstance(op, DepVersions):
                versions.update(op)
        db = state["db"]
        try:
            existing = _present([row["key"] for row in rows])
            db.begin()
            if versions:
                (CacheDep
                 .insert_many([{"name": name, "version": version, "changed_at": time.time()}
                               for name, version in versions.items()])
                 .on_conflict(conflict_target=[CacheDep.name], preserve=[CacheDep.version, CacheDep.changed_at])
                 .execute())
            for gone in chunked(sorted(rejected), 500):  # before this batch's rows: an answer recorded anew stays
                CacheEntry.delete().where(CacheEntry.key.in_(gone)).execute()
                CacheVector.delete().where(CacheVector.key.in_(gone)).execute()
            for batch in chunked(rows, 40):  # within SQLite's bound on parameters per statement
                CacheEntry.insert_many(batch).on_conflict(conflict_target=[CacheEntry.key],
                                                          preserve=kept_on_overwrite).execute()
            for batch in chunked(vector_rows(records, {row["key"] for row in rows}), 100):
                (CacheVector
                 .insert_many(batch)
                 .on_conflict(conflict_target=[CacheVector.key],
                              preserve=[CacheVector.context, CacheVector.embedder, CacheVector.reports,
                                        CacheVector.created_at, CacheVector.text, CacheVector.vector])
                 .execute())
            for key, count in reports.items():
                CacheVector.update(reports=CacheVector.reports + count).where(CacheVector.key == key).execute()
            for key, (count, when) in hits.items():
                (CacheEntry
                 .update(hit_count=CacheEntry.hit_count + count, last_hit_at=when)
                 .where(CacheEntry.key == key)
                 .execute())
            if hits or misses:
                add_counts(counts_of(hits, misses))
            db.commit()
        except Exception as e:
            # A failed COMMIT may already have been rolled back: a second rollback's own error
            # ("no transaction is active") must not hide the cause.
            with contextlib.suppress(Exception):
                db.rollback()
            cause = transient_cause(e, remote=not url.startswith("sqlite:"))
            if cause is None:
                raise
            if "server cannot be reached" in cause or "replaced" in cause:
                _reopen(state, url)
            raise Retry(cause) from e
        fresh = [record for record in records if record.key not in existing]
        if state.get("upkeep") is not None and time.monotonic() - state["upkept"] >= UPKEEP_EVERY:
            state["upkept"] = time.monotonic()
            try:
                removed = upkeep(state["upkeep"], time.time())
                if removed.expired or removed.evicted:
                    notes.append(removed)
            except Exception as e:  # the entries were written; bounding the cache is tried again later
                notes.append(f"could not delete expired or evict entries: {first_line(e)}")
        return notes + [Later(functools.partial(near_miss_of, record, state["rules"])) for record in fresh]

    return write


def _reopen(state: dict[str, Any], url: str) -> None:
    with contextlib.suppress(Exception):
        state["db"].close()
    try:
        state["db"] = open_database(url)
    except Exception as e:
        raise Retry(f"the database cannot be opened ({first_line(e)})") from e


def _present(keys: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        rows = CacheEntry.select(CacheEntry.key).where(CacheEntry.key.in_(keys[start:start + 500])).tuples()
        found |= {key for (key,) in cast(list[tuple[str]], list(rows))}
    return found
