"""The command line's queries (scripts/llm-cache): plain functions over the bound database
(cache_models.open_database first). No CacheStore and no writer process, so the command line never
starts one beside a proxy that may be running on the same cache."""

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast

from peewee import Database, chunked, fn

from cache_models import ENTRY_SIZE, CacheCount, CacheEntry, database
from llm_cache.keys import parse_json
from llm_cache.writes import utc_day

# Plain functions over the bound database (open_database first): no CacheStore, no writer process,
# so the command line never starts one beside a proxy that may be running on the same cache.

_LISTED = (CacheEntry.key, CacheEntry.family, CacheEntry.status, CacheEntry.is_stream, CacheEntry.created_at,
           CacheEntry.host, CacheEntry.model, CacheEntry.input_tokens, CacheEntry.output_tokens,
           CacheEntry.hit_count, CacheEntry.last_hit_at, CacheEntry.expires_at, CacheEntry.sample, CacheEntry.tags,
           CacheEntry.namespace)
PAGE = 200  # rows per query when every column is read: a page of large streams stays within memory


class EntryFilter(NamedTuple):
    """Which entries a command works on; None leaves a condition out. Times are unix seconds."""

    model: str | None = None
    host: str | None = None
    family: str | None = None
    tag: str | None = None
    created_before: float | None = None  # --older-than
    created_after: float | None = None  # --newer-than
    used_since: float | None = None  # --since: created or last hit at or after
    text: str | None = None  # in a string of the stored request body, ignoring case
    namespace: str | None = None  # X-LLM-Cache-Namespace it was recorded under ("" for none)


EVERY_ENTRY = EntryFilter()


def _filtered(query: Any, spec: EntryFilter) -> Any:
    conditions = []
    if spec.model is not None:
        conditions.append(CacheEntry.model == spec.model)
    if spec.host is not None:
        conditions.append(CacheEntry.host == spec.host.lower())
    if spec.family is not None:
        conditions.append(CacheEntry.family == spec.family)
    if spec.namespace is not None:
        conditions.append(CacheEntry.namespace == spec.namespace if spec.namespace else CacheEntry.namespace.is_null())
    if spec.tag is not None:  # LIKE narrows (it may ignore case, "_" is a wildcard); _wanted decides
        conditions.append(CacheEntry.tags.contains(f",{spec.tag},"))
    if spec.created_before is not None:
        conditions.append(CacheEntry.created_at < spec.created_before)
    if spec.created_after is not None:
        conditions.append(CacheEntry.created_at >= spec.created_after)
    if spec.used_since is not None:
        conditions.append((CacheEntry.created_at >= spec.used_since) | (CacheEntry.last_hit_at >= spec.used_since))
    return query.where(*conditions) if conditions else query


def _wanted(spec: EntryFilter, tags: str | None, packed: bytes | None) -> bool:
    """The conditions SQL cannot decide: a tag exactly, text inside the compressed request."""
    if spec.tag is not None and f",{spec.tag}," not in (tags or ""):
        return False
    return spec.text is None or (packed is not None and mentions(bytes(packed), spec.text))


def mentions(packed: bytes, text: str) -> bool:
    """Whether a string in a stored request's body (messages, system, tools…) contains `text`, ignoring case."""
    needle = text.casefold()
    pending = [parse_json(zlib.decompress(packed)).get("body")]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if needle in value.casefold():
                return True
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def listed_entries(spec: EntryFilter, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries matching `spec`, newest first, without their bodies; `size` is what llm_cache_max_size counts."""
    columns: list[Any] = [*_LISTED, ENTRY_SIZE.alias("size")]
    if spec.text is not None:
        columns.append(CacheEntry.request)
    query = _filtered(CacheEntry.select(*columns), spec).order_by(CacheEntry.created_at.desc(), CacheEntry.key)
    found: list[dict[str, Any]] = []
    for row in query.dicts().iterator():
        if limit is not None and len(found) >= limit:
            break
        if _wanted(spec, row["tags"], row.pop("request", None)):
            found.append(row)
    return found


def full_entries(spec: EntryFilter = EVERY_ENTRY) -> Iterator[dict[str, Any]]:
    """Every column of the entries matching `spec`, ordered by key, read a page at a time."""
    after = ""
    while True:
        page = list(_filtered(CacheEntry.select(), spec)
                    .where(CacheEntry.key > after)
                    .order_by(CacheEntry.key)
                    .limit(PAGE)
                    .dicts())
        if not page:
            return
        after = page[-1]["key"]
        yield from (row for row in page if _wanted(spec, row["tags"], row["request"]))




def counted(since: float | None = None) -> dict[str, Any]:
    """Hits and misses the proxies counted (CacheCount), in all and per model, from the UTC day of
    `since` on: the hit rate."""
    query = CacheCount.select(CacheCount.model, fn.SUM(CacheCount.hits), fn.SUM(CacheCount.misses))
    if since is not None:
        query = query.where(CacheCount.day >= utc_day(since))
    rows = cast(list[tuple[str, int | None, int | None]], list(query.group_by(CacheCount.model).tuples()))
    models = {model: {"hits": int(hits or 0), "misses": int(misses or 0)} for model, hits, misses in rows}
    hits, misses = sum(m["hits"] for m in models.values()), sum(m["misses"] for m in models.values())
    return {"hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else None,
            "models": models}


def usage_groups(spec: EntryFilter = EVERY_ENTRY) -> list[dict[str, Any]]:
    """Entries, hits and bytes per (host, model, input_tokens, output_tokens): what stats needs to price
    each request at its own size (a price can depend on a request's prompt length)."""
    group = (CacheEntry.host, CacheEntry.model, CacheEntry.input_tokens, CacheEntry.output_tokens)
    query = (_filtered(CacheEntry.select(*group,
                                         fn.COUNT(CacheEntry.key).alias("entries"),
                                         fn.SUM(CacheEntry.hit_count).alias("hits"),
                                         fn.SUM(ENTRY_SIZE).alias("bytes")), spec)
             .group_by(*group)
             .order_by(*group))
    return [{**row, "hits": int(row["hits"] or 0), "bytes": int(row["bytes"] or 0)} for row in query.dicts()]


def totals() -> tuple[int, int]:
    """(entries, bytes) of the whole cache."""
    row = cast(tuple[int, int | None], CacheEntry.select(fn.COUNT(CacheEntry.key), fn.SUM(ENTRY_SIZE)).tuples().get())
    return int(row[0]), int(row[1] or 0)


def matching_keys(spec: EntryFilter) -> list[str]:
    columns = [CacheEntry.key, CacheEntry.tags] + ([CacheEntry.request] if spec.text is not None else [])
    rows = _filtered(CacheEntry.select(*columns), spec).tuples().iterator()
    return [row[0] for row in rows if _wanted(spec, row[1], row[2] if spec.text is not None else None)]


def expired_keys(now: float) -> list[str]:
    rows = CacheEntry.select(CacheEntry.key).where(CacheEntry.expires_at < now).tuples()
    return [key for (key,) in cast(list[tuple[str]], list(rows))]


def least_recently_used(max_bytes: int) -> list[str]:
    """The keys to delete, least recently used first (last hit, else recorded), for the cache's entries
    to take at most `max_bytes`."""
    total = totals()[1]
    query = (CacheEntry.select(CacheEntry.key, ENTRY_SIZE)
             .order_by(fn.COALESCE(CacheEntry.last_hit_at, CacheEntry.created_at), CacheEntry.key)
             .tuples())
    victims: list[str] = []
    for key, size in query.iterator():
        if total <= max_bytes:
            break
        victims.append(key)
        total -= int(size or 0)
    return victims


def delete_keys(keys: Sequence[str], progress: Callable[[int], None] | None = None) -> int:
    """Delete these entries, 500 at a time (within SQLite's bound on parameters); returns how many went."""
    deleted = 0
    for start in range(0, len(keys), 500):
        deleted += CacheEntry.delete().where(CacheEntry.key.in_(list(keys[start:start + 500]))).execute()
        if progress is not None:
            progress(min(start + 500, len(keys)))
    return deleted


def delete_every_entry() -> int:
    return CacheEntry.delete().execute()


def upsert_entries(rows: Iterable[dict[str, Any]], progress: Callable[[int], None] | None = None) -> int:
    """Insert entries (every column but hit_count and last_hit_at), replacing any of the same key;
    an entry already there keeps its hit count. Returns how many were written."""
    db = cast(Database, database.obj)
    content = [field for name, field in CacheEntry._meta.fields.items()
               if name not in ("key", "hit_count", "last_hit_at")]
    written = 0
    for page in chunked(rows, PAGE):
        with db.atomic():
            for batch in chunked(page, 40):  # within SQLite's bound on parameters per statement
                CacheEntry.insert_many(batch).on_conflict(conflict_target=[CacheEntry.key],
                                                          preserve=content).execute()
        written += len(page)
        if progress is not None:
            progress(written)
    return written


def vacuum() -> None:
    """Give deleted entries' space back: SQLite rewrites the file (and empties the WAL); PostgreSQL
    marks it reusable (VACUUM FULL would lock the table a running proxy reads)."""
    db = cast(Database, database.obj)
    if db.__class__.__name__.startswith("Sqlite"):
        db.execute_sql("VACUUM")
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        db.execute_sql(f"VACUUM {CacheEntry._meta.table_name}")

