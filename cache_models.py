"""Storage: the peewee model, the database binding, and plain-data functions over it.

One code path for SQLite (the default, a file) and PostgreSQL (a team's shared cache): the database
comes from a URL through playhouse.db_url. Reads run on the caller's thread with one prebuilt SQL
statement; every write goes through one writer thread (llm_cache.writer).
"""

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from peewee import (
    BlobField,
    BooleanField,
    CharField,
    Database,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
    fn,
)
from playhouse.db_url import connect

from llm_cache.records import Record
from llm_cache.writer import BatchWriter

logger = logging.getLogger(__name__)

database = DatabaseProxy()

SUPPORTED_SCHEMES = ("sqlite", "postgres", "postgresql")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # the event loop reads while the writer thread commits, without waiting
    "synchronous": "normal",  # with WAL: survives a crash of the proxy, and commits stay cheap
    "busy_timeout": 5000,  # a second proxy or the CLI holding the lock: wait up to 5 s, don't fail
}


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class CacheEntry(BaseModel):
    key = CharField(primary_key=True, max_length=64)
    family = CharField(max_length=32)
    host = CharField(max_length=255)
    model = CharField(max_length=255, index=True)
    status = IntegerField()
    headers = TextField()  # JSON list of [name, value]; never credentials (they are request headers)
    body = BlobField()
    is_stream = BooleanField()
    request = BlobField()  # canonical request JSON, for inspection; no auth headers, no ?key=
    input_tokens = IntegerField(null=True)
    output_tokens = IntegerField(null=True)
    created_at = FloatField()  # unix seconds
    hit_count = IntegerField(default=0)
    last_hit_at = FloatField(null=True)


def resolve_db_url(url: str, base_dir: str) -> str:
    """Validate a database URL and make a relative SQLite path absolute against base_dir.
    Raises ValueError with a message fit for the user."""
    parts = urlsplit(url)
    if parts.scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"llm_cache_db must be a database URL with one of the schemes {', '.join(SUPPORTED_SCHEMES)}, "
            f"e.g. sqlite:///llm-cache.sqlite3 or postgresql://user@host/db; got {url!r}"
        )
    if parts.scheme != "sqlite":
        if not parts.path.strip("/"):
            raise ValueError(f"llm_cache_db {url!r} names no database (postgresql://host/DBNAME)")
        return url
    path = url[len("sqlite://"):].removeprefix("/")
    if not path or path.startswith(":memory:"):
        raise ValueError(
            "llm_cache_db needs a SQLite file (sqlite:///path/to/file); an in-memory database "
            "cannot be shared with the writer thread"
        )
    path = path.split("?", 1)[0]
    return "sqlite:///" + os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))


def redact_url(url: str) -> str:
    """The URL with any password removed, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def open_database(url: str) -> Database:
    """Connect, bind the models and create the table if it is missing."""
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
        db = connect(url, pragmas=SQLITE_PRAGMAS)
    else:
        db = connect(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    db.create_tables([CacheEntry], safe=True)
    return db


def _row_of(record: Record) -> dict[str, Any]:
    return {
        "key": record.key,
        "family": record.family,
        "host": record.host,
        "model": record.model,
        "status": record.status,
        "headers": orjson.dumps(record.headers).decode(),
        "body": record.body,
        "is_stream": record.is_stream,
        "request": record.request,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "created_at": record.created_at,
    }


class CacheStore:
    """The cache's storage: `find` on the caller's thread, `put`/`touch` through the writer thread.

    Entries handed to `put` are visible to `find` at once (from memory until they are committed), so
    a client repeating a request the moment it got the answer already hits.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = open_database(url)
        # Built once: running the ORM per lookup costs ~10x the lookup itself.
        self._find_sql = (
            CacheEntry.select(
                CacheEntry.status,
                CacheEntry.headers,
                CacheEntry.body,
                CacheEntry.is_stream,
                CacheEntry.created_at,
                CacheEntry.family,
            )
            .where(CacheEntry.key == "?")
            .sql()[0]
        )
        self._pending: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._writer = BatchWriter(self._apply, self._settled)

    def find(self, key: str) -> Record | None:
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            return pending
        row = self.db.execute_sql(self._find_sql, (key,)).fetchone()
        if row is None:
            return None
        status, headers, body, is_stream, created_at, family = row
        return Record(
            key=key,
            status=status,
            headers=[tuple(h) for h in orjson.loads(headers)],  # type: ignore[misc]
            body=bytes(body),
            is_stream=bool(is_stream),
            created_at=created_at,
            family=family,
        )

    def put(self, record: Record) -> None:
        with self._lock:
            self._pending[record.key] = record
        self._writer.submit(record)

    def touch(self, key: str, when: float) -> None:
        """Count a hit (batched with other writes)."""
        self._writer.submit((key, when))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
        self.db.close()

    def stats(self) -> dict[str, Any]:
        self.flush()
        query = CacheEntry.select(
            CacheEntry.family,
            fn.COUNT(CacheEntry.key).alias("entries"),
            fn.SUM(CacheEntry.hit_count).alias("hits"),
            fn.SUM(fn.LENGTH(CacheEntry.body)).alias("bytes"),
        ).group_by(CacheEntry.family)
        rows = cast(list[tuple[str, int, int | None, int | None]], list(query.tuples()))  # typed rows
        families = {
            family: {"entries": entries, "hits": int(hits or 0), "bytes": int(size or 0)}
            for family, entries, hits, size in rows
        }
        return {
            "database": redact_url(self.url),
            "entries": sum(f["entries"] for f in families.values()),
            "hits": sum(f["hits"] for f in families.values()),
            "families": families,
        }

    def clear(self) -> int:
        self.flush()
        return CacheEntry.delete().execute()

    def _apply(self, ops: Sequence[Record | tuple[str, float]]) -> None:
        records = {op.key: op for op in ops if isinstance(op, Record)}
        hits: dict[str, tuple[int, float]] = {}
        for op in ops:
            if isinstance(op, tuple):
                count, _ = hits.get(op[0], (0, 0.0))
                hits[op[0]] = (count + 1, op[1])
        with self.db.atomic():
            if records:
                (
                    CacheEntry.insert_many([_row_of(r) for r in records.values()])
                    .on_conflict(
                        conflict_target=[CacheEntry.key],
                        preserve=[f for name, f in CacheEntry._meta.fields.items()
                                  if name not in ("key", "hit_count", "last_hit_at")],
                    )
                    .execute()
                )
            for key, (count, when) in hits.items():
                (
                    CacheEntry.update(hit_count=CacheEntry.hit_count + count, last_hit_at=when)
                    .where(CacheEntry.key == key)
                    .execute()
                )

    def _settled(self, ops: Sequence[Any], error: BaseException | None) -> None:
        if error is not None:
            stored = sum(isinstance(op, Record) for op in ops)
            logger.warning("llm-cache: could not write %d entries to %s: %s", stored, redact_url(self.url), error)
        with self._lock:
            for op in ops:
                if isinstance(op, Record) and self._pending.get(op.key) is op:
                    del self._pending[op.key]

