"""Storage: the peewee model, the database binding, and plain-data functions over it.

One code path for SQLite (the default, a file) and PostgreSQL (a team's shared cache): the database
comes from a URL through playhouse.db_url. Reads run on the caller's thread with one prebuilt SQL
statement; every write goes through one writer process (llm_cache.writer).
"""

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from peewee import (
    BlobField,
    BooleanField,
    Case,
    CharField,
    CompositeKey,
    Database,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
    fn,
)
from playhouse.db_url import connect
from playhouse.migrate import SchemaMigrator, migrate

from llm_cache import explain, writes
from llm_cache.endpoints import Family
from llm_cache.normalise import DEFAULT_RULES, KeyRules
from llm_cache.records import Record, unpack_request
from llm_cache.vector_index import VectorIndex, Vectors
from llm_cache.writer import RETRY_FOR, ProcessWriter

logger = logging.getLogger(__name__)
# mitmproxy sets the root logger to DEBUG (and quiets tornado, asyncio, hpack). peewee logs every
# query at DEBUG, and each record went through mitmproxy's log handlers: ~200 us on every lookup.
logging.getLogger("peewee").setLevel(logging.INFO)

database = DatabaseProxy()

SUPPORTED_SCHEMES = ("sqlite", "postgres", "postgresql")

CONNECT_TIMEOUT = 3  # seconds, for PostgreSQL unless the URL sets ?connect_timeout=

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # the event loop reads while the writer process commits, without waiting
    "synchronous": "normal",  # with WAL: survives a crash of the proxy, and commits stay cheap
    "busy_timeout": 5000,  # a second proxy or the CLI holding the lock: wait up to 5 s, don't fail
}


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class CacheEntry(BaseModel):
    # Column order matters for speed: SQLite reads a row front to back and must walk a large
    # value's overflow pages to reach any column after it. Small columns first, `body` (needed by
    # a hit) next, the inspection copy of the request last.
    key = CharField(primary_key=True, max_length=64)
    family = CharField(max_length=32)
    status = IntegerField()
    is_stream = BooleanField()
    created_at = FloatField()  # unix seconds
    host = CharField(max_length=255)
    model = CharField(max_length=255, index=True)
    input_tokens = IntegerField(null=True)
    output_tokens = IntegerField(null=True)
    hit_count = IntegerField(default=0)
    last_hit_at = FloatField(null=True)
    expires_at = FloatField(null=True)  # unix seconds, for entries recorded with X-LLM-Cache-TTL
    sample = IntegerField(null=True)  # 0 for the first response to a request; see llm_cache_samples
    tags = TextField(null=True)  # ",a,b," from X-LLM-Cache-Tags, so one LIKE finds a tag
    deps = TextField(null=True)  # JSON [[dependency, version], ...] it was recorded under (X-LLM-Cache-Deps)
    namespace = CharField(max_length=128, null=True)  # X-LLM-Cache-Namespace, for listing (the key keeps them apart)
    headers = TextField()  # JSON list of [name, value]; response headers only, so never credentials
    body = BlobField()  # the decoded response: JSON, or the SSE bytes of a recorded stream
    assembled = BlobField(null=True)  # a stream's JSON answer, assembled when it was written
    request = BlobField()  # zlib(canonical request JSON), for inspection; no auth headers, no ?key=


class CacheDep(BaseModel):
    """The current version of each dependency a request or `llmcache.bump` named (X-LLM-Cache-Deps):
    an entry recorded under another is stale."""

    name = CharField(primary_key=True, max_length=128)
    version = CharField(max_length=128)
    changed_at = FloatField()


class CacheCount(BaseModel):
    """Hits and misses per UTC day, endpoint family, host and model, counted by the writer in the
    batches it writes anyway: the hit rate, and the tokens hits saved (each hit, its entry's usage)."""

    day = CharField(max_length=10)  # YYYY-MM-DD, UTC
    family = CharField(max_length=32)
    host = CharField(max_length=255)
    model = CharField(max_length=255)
    hits = IntegerField(default=0)
    misses = IntegerField(default=0)  # LLM calls that went upstream (recorded or not)
    input_tokens_saved = IntegerField(default=0)
    output_tokens_saved = IntegerField(default=0)

    class Meta:
        primary_key = CompositeKey("day", "family", "host", "model")


class CacheVector(BaseModel):
    """The semantic tier's embedding of an entry's last turn (llm_cache.semantic), compared only
    with those of the same context (every other part of the request) and embedder. A vector whose
    entry is gone is never read (the lookup joins the entry) and is deleted by the writer's upkeep."""

    key = CharField(primary_key=True, max_length=64)  # the entry's
    context = CharField(max_length=64)  # the key of the request without its last turn
    embedder = CharField(max_length=255)
    reports = IntegerField(default=0)  # wrong semantic answers reported (X-LLM-Cache-Semantic-Reject)
    created_at = FloatField()
    text = TextField()  # the turn that was embedded
    vector = BlobField()  # float32, unit length

    class Meta:
        # The lookup's order: without created_at in the index, SQLite sorts a context's rows, blobs
        # and all, on every lookup (50 ms for 1,000 of them, against 4 ms).
        indexes = ((("context", "embedder", "created_at"), False),)


class CacheSetting(BaseModel):
    """Values that belong to the cache itself, such as the secret of the `credential` scope's HMAC."""

    name = CharField(primary_key=True, max_length=64)
    value = TextField()


# Columns added after the first release; an older cache gets them when it is opened.
_ADDED_COLUMNS = ("expires_at", "sample", "tags", "assembled", "deps", "namespace")


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
            "cannot be shared with the writer process"
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
        path = url[len("sqlite:///"):].split("?", 1)[0]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        keep_private(path)
        db = connect(url, pragmas=SQLITE_PRAGMAS)
    elif "connect_timeout=" in url:
        db = connect(url)
    else:
        # An unreachable server must not hold a connection attempt for a TCP timeout of minutes,
        # and a server that vanishes without a word must be noticed (keepalives, in ~11 s).
        db = connect(url, connect_timeout=CONNECT_TIMEOUT, keepalives=1, keepalives_idle=5, keepalives_interval=2,
                     keepalives_count=3)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    db.create_tables([CacheEntry, CacheSetting, CacheCount, CacheDep, CacheVector], safe=True)
    _add_missing_columns(db)
    return db


def keep_private(path: str) -> None:
    """The cache holds every prompt: its file is its owner's alone (0600). SQLite gives the -wal and
    -shm files the database file's mode; files an earlier version made readable to others are
    narrowed, once, with a log line."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return
    except FileExistsError:
        pass
    for name in (path, f"{path}-wal", f"{path}-shm"):
        try:
            mode = os.stat(name).st_mode & 0o777
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                logger.info("llm-cache: %s was readable by other users; now by its owner only", name)
        except OSError:  # not there (a -wal between runs), or not ours to change: SQLite will say
            continue


def _add_missing_columns(db: Database) -> None:
    table = CacheEntry._meta.table_name
    present = {column.name for column in db.get_columns(table)}
    missing = [name for name in _ADDED_COLUMNS if name not in present]
    if missing:
        migrator = SchemaMigrator.from_database(db)
        with db.atomic():
            migrate(*(migrator.add_column(table, name, CacheEntry._meta.fields[name]) for name in missing))
        logger.info("llm-cache: added the columns %s to %s", ", ".join(missing), table)


def setting(name: str, make: Callable[[], str]) -> str:
    """A cache-wide value, created once by whichever proxy gets there first."""
    CacheSetting.insert(name=name, value=make()).on_conflict_ignore().execute()
    return CacheSetting.get_by_id(name).value


def scope_secret() -> str:
    """The secret of the credential scope's HMAC: generated once, stored with the cache."""
    return setting("scope_secret", lambda: secrets.token_hex(32))


HIT_COUNT_INTERVAL = 0.5  # seconds: hit counts are summed in memory and sent this often
DEPS_REFRESH = 2.0  # seconds: dependency versions another proxy set are seen within this
FILE_CHECK_INTERVAL = 1.0  # seconds between checks that the SQLite file is still the one opened
SIMILAR_AT_MOST = 1000  # vectors of one context the semantic tier compares, the newest
NEIGHBOURS = 20  # recent entries of the same endpoint and model a near miss is looked for among


class CacheStore:
    """The cache's storage: `find` on the caller's thread, `put`/`touch` through the writer process.

    Entries handed to `put` are visible to `find` at once (from memory until they are committed), so
    a client repeating a request the moment it got the answer already hits.
    """

    def __init__(self, url: str, rules: KeyRules = DEFAULT_RULES,
                 on_near_miss: Callable[[explain.NearMiss], None] | None = None, *,
                 write_retry: float = RETRY_FOR) -> None:
        """`on_near_miss` is called (on a helper thread) when a newly stored entry has a stored
        neighbour of the same endpoint and model: what differs, for the user to see."""
        self.url = url
        self.remote = not url.startswith("sqlite:")  # across the network: looked up off the event loop
        self.rules = rules
        self._on_near_miss = on_near_miss
        self.db = open_database(url)
        self._file_inode = writes.sqlite_inode(url)
        self._inode_checked = time.monotonic()
        # Built once: running the ORM per lookup costs ~10x the lookup itself. A JSON request reads
        # a stream entry's assembled answer instead of its stream (the body only when there is none).
        answer = [CacheEntry.status, CacheEntry.headers, CacheEntry.body, CacheEntry.is_stream, CacheEntry.created_at,
                  CacheEntry.family, CacheEntry.expires_at, CacheEntry.deps]
        self._find_sql = CacheEntry.select(*answer).where(CacheEntry.key == "?").sql()[0]
        answer[2] = Case(None, [(CacheEntry.assembled.is_null(), CacheEntry.body)], None)
        self._find_json_sql = (
            CacheEntry.select(*answer, CacheEntry.assembled).where(CacheEntry.key == "?").sql()[0])
        self.vectors = VectorIndex(SIMILAR_AT_MOST)  # the semantic tier's, in memory
        self._turns_sql: dict[int, str] = {}
        self._similar_sql = (
            CacheVector.select(CacheVector.key, CacheVector.vector)
            .join(CacheEntry, on=(CacheEntry.key == CacheVector.key))
            .where((CacheVector.context == "?") & (CacheVector.embedder == "?") & (CacheVector.reports < "?"))
            .order_by(CacheVector.created_at.desc())
            .limit(SIMILAR_AT_MOST)
            .sql()[0])
        self._scope_secret: bytes | None = None
        self._pending: dict[str, tuple[int, Record | None]] = {}  # None: not to be served until the writer checked it
        self._waiters: dict[int, Future[str]] = {}
        self._hits: dict[str, tuple[int, float]] = {}
        self._misses: dict[tuple[str, str, str, str], int] = {}  # (day, family, host, model) -> misses
        self._versions: dict[str, str] = {}  # dependency -> current version (X-LLM-Cache-Deps)
        self._versions_unwritten: dict[str, tuple[str, float]] = {}  # set here, and when: the database may lag
        self._versions_read = float("-inf")
        self._hits_sent = 0.0
        self._lock = threading.Lock()
        self.retrying: str | None = None  # why the writer is trying a batch again, while it is
        self.writes = {"stored": 0, "lost": 0}  # entries, this process's run
        self.lost: dict[str, int] = {}  # entries lost, by cause
        self.write_retry = write_retry
        from llm_cache.batches import open_writer  # here: it needs this module's models, this module needs it

        self._writer = ProcessWriter(open_writer, (url, rules), self._settled, retrying=self._retrying,
                                     retry_for=write_retry)

    def find(self, key: str) -> Record | None:
        return self._find(key, self._find_sql)

    def find_json(self, key: str) -> Record | None:
        """`find` for a JSON request: a stream entry comes with its assembled answer, not its stream."""
        return self._find(key, self._find_json_sql)

    def similar(self, context: str, embedder: str, block_after: int) -> Vectors:
        """The vectors of the newest entries recorded in this context by this embedder that have
        fewer than `block_after` reports of a wrong semantic answer (0: no limit), from memory
        (llm_cache.vector_index) or, every few seconds, from the database."""

        def read() -> list[tuple[str, bytes]]:
            cursor = self.db.cursor()
            cursor.execute(self._similar_sql, (context, embedder, block_after or 2**31 - 1, SIMILAR_AT_MOST))
            return [(key, bytes(vector)) for key, vector in cursor.fetchall()]

        return self.vectors.get(context, embedder, read)

    def turns(self, keys: Sequence[str]) -> dict[str, str]:
        """The embedded turns of these entries (the few the semantic tier compares in words)."""
        sql = self._turns_sql.get(len(keys))
        if sql is None:  # built once per count (the ORM costs ~1 ms a query)
            sql = self._turns_sql[len(keys)] = (
                CacheVector.select(CacheVector.key, CacheVector.text).where(CacheVector.key.in_(list(keys))).sql()[0])
        cursor = self.db.cursor()
        cursor.execute(sql, tuple(keys))
        return dict(cursor.fetchall())

    def report_semantic(self, keys: Sequence[str]) -> None:
        """Entries given as wrong semantic answers: counted by the writer; past
        llm_cache_semantic_block_after reports, a context read from the database leaves them out (read
        again at its next lookup, after the writer has counted this one: its ops are written in order)."""
        self._writer.submit(writes.SemanticReports(tuple(keys)))
        self.vectors.read_again(keys)

    def _find(self, key: str, sql: str) -> Record | None:
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None and pending[1] is not None:
            return pending[1]
        if self._file_inode is not None and time.monotonic() - self._inode_checked > FILE_CHECK_INTERVAL:
            self._check_file()
        try:
            cursor = self.db.cursor()  # the DB-API cursor itself: execute_sql's wrapping costs as much again
            cursor.execute(sql, (key,))
            row = cursor.fetchone()
        except Exception as e:
            # The server went away: the next lookup connects again.
            if self.remote and writes.transient_cause(e, remote=True):
                with contextlib.suppress(Exception):
                    self.db.close()
            raise
        if row is None:
            return None
        status, headers, body, is_stream, created_at, family, expires_at, deps, *assembled = row
        return Record(
            key=key,
            status=status,
            headers=[tuple(h) for h in orjson.loads(headers)],  # type: ignore[misc]
            body=bytes(body) if body is not None else b"",
            is_stream=bool(is_stream),
            created_at=created_at,
            family=family,
            expires_at=expires_at,
            assembled=bytes(assembled[0]) if assembled and assembled[0] is not None else None,
            deps=tuple(tuple(dep) for dep in orjson.loads(deps)) if deps else (),  # type: ignore[misc]
        )

    def _check_file(self) -> None:
        """A SQLite file deleted or replaced under the proxy: read the new one (the writer makes
        it), never the deleted one's entries (a stat once a second, ~2 us)."""
        self._inode_checked = time.monotonic()
        if writes.sqlite_inode(self.url) in (self._file_inode, -1):  # the same file, or not there yet
            return
        logger.warning("llm-cache: the cache file %s was deleted or replaced; reading the new one",
                       redact_url(self.url))
        with contextlib.suppress(Exception):
            self.db.close()
        self.db = open_database(self.url)
        self._file_inode = writes.sqlite_inode(self.url)

    def credential_tag(self, credential: str) -> str:
        """An HMAC of a credential under the cache's own secret: entries of one API key stay apart
        without the key, or anything it could be recovered from, reaching the database."""
        if self._scope_secret is None:
            self._scope_secret = bytes.fromhex(scope_secret())
        return hmac.new(self._scope_secret, credential.encode(), hashlib.sha256).hexdigest()

    def recent_requests(self, family: str, host: str, limit: int = 100) -> list[tuple[str, float, bytes]]:
        """(key, created_at, packed request) of the newest entries for one endpoint: the candidates
        a replay miss is compared with."""
        self.flush()
        query = (
            CacheEntry.select(CacheEntry.key, CacheEntry.created_at, CacheEntry.request)
            .where((CacheEntry.family == family) & (CacheEntry.host == host))
            .order_by(CacheEntry.created_at.desc())
            .limit(limit)
        )
        rows = cast(list[tuple[str, float, bytes]], list(query.tuples()))
        return [(key, created_at, bytes(request)) for key, created_at, request in rows]

    def invalidate(self, *, tag: str | None = None, model: str | None = None, host: str | None = None) -> int:
        """Delete every entry with this tag, model or host; returns how many were deleted."""
        self.flush()
        if tag is not None:
            # LIKE treats "_" as a wildcard and may ignore case: it narrows, Python decides.
            needle = f",{tag},"
            rows = CacheEntry.select(CacheEntry.key, CacheEntry.tags).where(CacheEntry.tags.contains(needle))
            tagged = cast(list[tuple[str, str]], list(rows.tuples()))
            keys = [key for key, tags in tagged if needle in tags]
            deleted = 0
            for start in range(0, len(keys), 500):
                deleted += CacheEntry.delete().where(CacheEntry.key.in_(keys[start:start + 500])).execute()
            return deleted
        if model is not None:
            condition = CacheEntry.model == model
        elif host is not None:
            condition = CacheEntry.host == host.lower()
        else:
            raise ValueError("invalidate needs a tag, a model or a host")
        return CacheEntry.delete().where(condition).execute()

    def put(self, record: Record) -> Future[str]:
        """Hand an entry to the writer: a future of what becomes of it, "stored" once it is committed
        or "skipped: <why>" when it cannot be (set on a helper thread). Raises RuntimeError when the
        writer is too far behind to take it. A JSON entry (checked on the way in) is served at once;
        a stream is checked by the writer (llm_cache.records.derived_columns), so it is served once
        it is committed."""
        future: Future[str] = Future()
        if record.semantic is not None:
            self.vectors.add(record.semantic.context, record.semantic.embedder, record.key, record.semantic.vector)
        with self._lock:  # held across submit, so the acknowledgement cannot overtake us
            number = self._writer.submit(record)
            self._pending[record.key] = (number, None if record.is_stream else record)
            self._waiters[number] = future
        return future

    def touch(self, key: str, when: float) -> None:
        """Count a hit. Counts add up in memory and reach the writer every HIT_COUNT_INTERVAL."""
        with self._lock:
            count, _ = self._hits.get(key, (0, when))
            self._hits[key] = (count + 1, when)
        if time.monotonic() - self._hits_sent >= HIT_COUNT_INTERVAL:
            self._send_hits()

    def missed(self, family: str, host: str, model: str, when: float) -> None:
        """Count an LLM call that went upstream; sent to the writer with the hit counts."""
        where = (writes.utc_day(when), family, host, model)
        with self._lock:
            self._misses[where] = self._misses.get(where, 0) + 1

    def flush(self) -> None:
        self._send_hits()
        self._writer.flush()

    def close(self) -> None:
        self._send_hits()
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
        counted = cast(tuple[int | None, ...], CacheCount.select(
            fn.SUM(CacheCount.hits), fn.SUM(CacheCount.misses), fn.SUM(CacheCount.input_tokens_saved),
            fn.SUM(CacheCount.output_tokens_saved)).tuples().get())
        hits, misses, input_saved, output_saved = (int(value or 0) for value in counted)
        return {
            "database": redact_url(self.url),
            "entries": sum(f["entries"] for f in families.values()),
            "hits": sum(f["hits"] for f in families.values()),
            "families": families,
            "counted": {"hits": hits, "misses": misses,  # since the cache counts misses
                        "hit_rate": hits / (hits + misses) if hits + misses else None,
                        "input_tokens_saved": input_saved, "output_tokens_saved": output_saved},
            "writes": {**self.writes, "waiting": self._writer.unsettled, "lost_by_cause": dict(self.lost),
                       "retrying": self.retrying},
        }

    def clear(self) -> int:
        self.flush()
        with self._lock:
            self._pending.clear()
        self.vectors = VectorIndex(SIMILAR_AT_MOST)
        CacheVector.delete().execute()
        return CacheEntry.delete().execute()

    def _send_hits(self) -> None:
        with self._lock:
            hits, self._hits = self._hits, {}
            misses, self._misses = self._misses, {}
            self._hits_sent = time.monotonic()
        for op in ([writes.HitCounts(hits)] if hits else []) + ([writes.MissCounts(misses)] if misses else []):
            if self._writer.dead:
                break
            try:
                self._writer.submit(op)
            except RuntimeError:  # a writer far behind (or just gone): counts are not worth failing a hit for
                logger.debug("llm-cache: %d counts dropped", len(op))

    @property
    def versions(self) -> dict[str, str]:
        """The dependencies' current versions, as this proxy knows them (and, every DEPS_REFRESH
        seconds, as the database says, where another proxy may have changed them)."""
        if time.monotonic() - self._versions_read >= DEPS_REFRESH:
            self._versions_read = time.monotonic()
            try:
                rows = CacheDep.select(CacheDep.name, CacheDep.version).tuples()
                read = dict(cast(list[tuple[str, str]], list(rows)))
                # Versions set here stand until the writer has surely written them; then the database's word wins.
                self._versions_unwritten = {name: (version, when) for name, (version, when)
                                            in self._versions_unwritten.items() if when > self._versions_read - 10}
                self._versions = {**read, **{name: version for name, (version, _) in self._versions_unwritten.items()}}
            except Exception as e:  # a lookup goes on with what this proxy knows
                logger.debug("llm-cache: dependency versions not read: %s", e)
        return self._versions

    def depend(self, deps: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """A request names dependencies: versions it names become current; the versions its answer
        is recorded under (a dependency named without a version: its current one)."""
        current = self._versions  # as this proxy knows them: no read of the database here, on the event loop
        changed = {name: version for name, version in deps if version and current.get(name) != version}
        if changed:
            self.bump(changed)
        return tuple((name, version or current.get(name, "")) for name, version in deps)

    def bump(self, versions: dict[str, str]) -> None:
        """New current versions: entries recorded under others are stale from now on."""
        self._versions = {**self._versions, **versions}
        now = time.monotonic()
        self._versions_unwritten.update({name: (version, now) for name, version in versions.items()})
        self._writer.submit(writes.DepVersions(versions))

    def reject(self, keys: Sequence[str]) -> None:
        """Entries reported as bad answers: no longer served, deleted by the writer."""
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)
        self.vectors.drop(keys)
        self._writer.submit(writes.Rejected(tuple(keys)))

    def reject_prefix(self, prefix: str) -> str:
        """`reject` for the one entry whose key starts with `prefix` (a command's argument); its
        full key. Raises KeyError when no entry, or more than one, has such a key."""
        self.flush()
        key = cast(str, entry_by_prefix(prefix)["key"])
        self.reject([key])
        self.flush()
        return key

    def set_upkeep(self, rules: writes.Upkeep) -> None:
        """How the writer keeps the cache bounded (options: size, TTL, stale-if-error)."""
        self._writer.submit(rules)

    def set_rules(self, rules: KeyRules) -> None:
        """The key rules changed (options): near misses are explained with the new ones."""
        if rules != self.rules:
            self.rules = rules
            self._writer.submit(writes.Rules(rules))

    def explain(self, key: str) -> tuple[explain.NearMiss, str] | None:
        """The near miss of the entry whose key starts with `key`, and the config.yaml text of a rule
        that would have made it a hit; None when it has no differing neighbour. Raises KeyError
        when no entry (or more than one) has that key."""
        self.flush()
        return explain_stored(key, self.rules)

    def _retrying(self, numbers: list[int], cause: str) -> None:
        """The writer could not write a batch, for a reason that may pass: it tries again."""
        if self.retrying != cause:
            logger.warning("llm-cache: could not write to %s: %s; trying again for up to %.0f s",
                           redact_url(self.url), cause, self.write_retry)
        self.retrying = cause

    def _settled(self, numbers: list[int], error: str | None, notes: list[Any]) -> None:
        skipped = {note.key: note.reason for note in notes if isinstance(note, writes.Skipped | writes.NotComplete)}
        for note in notes:
            if isinstance(note, explain.NearMiss):
                if self._on_near_miss is not None:
                    self._on_near_miss(note)
            elif isinstance(note, writes.NotComplete):  # an answer that was never a success: nothing is lost
                pass
            elif isinstance(note, writes.Removed):
                self.writes["expired"] = self.writes.get("expired", 0) + note.expired
                self.writes["evicted"] = self.writes.get("evicted", 0) + note.evicted
                logger.info("llm-cache: deleted %d expired entries and evicted %d least recently used (%.1f MB) "
                            "to stay under llm_cache_max_size", note.expired, note.evicted, note.evicted_bytes / 2**20)
            elif isinstance(note, writes.Skipped):
                logger.warning("llm-cache: not storing entry %s: %s", note.key[:12], note.reason)
            else:
                logger.warning("llm-cache: %s", note)
        done = set(numbers)
        incomplete = sum(isinstance(note, writes.NotComplete) for note in notes)
        with self._lock:
            entries = {number: key for key, (number, _) in self._pending.items() if number in done}
            for key in entries.values():
                del self._pending[key]
            waiters = [(self._waiters.pop(n), entries.get(n)) for n in numbers if n in self._waiters]
            not_stored = len(entries) if error is not None else len(skipped)
            self.writes["stored"] += len(entries) - not_stored
            self.writes["lost"] += not_stored if error is not None else not_stored - incomplete
            causes: list[str] = [error] * len(entries) if error is not None else [
                note.reason for note in notes if isinstance(note, writes.Skipped)]
            for cause in causes:
                self.lost[cause] = self.lost.get(cause, 0) + 1
        if error is not None:
            logger.warning("llm-cache: lost %s: could not write to %s: %s", _entries(len(entries)),
                           redact_url(self.url), error)
        elif self.retrying is not None:
            logger.info("llm-cache: writing to %s works again", redact_url(self.url))
            self.retrying = None
        for future, entry in waiters:
            if error is not None:
                future.set_result(f"skipped: not written ({error})")
            elif entry in skipped:
                future.set_result(f"skipped: {skipped[entry]}")
            else:
                future.set_result("stored")


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


# What an entry weighs: SQLite and PostgreSQL read a blob's length from its header, not its pages.
ENTRY_SIZE = (fn.LENGTH(CacheEntry.body) + fn.COALESCE(fn.LENGTH(CacheEntry.assembled), 0)
               + fn.LENGTH(CacheEntry.request))


def nearest_stored(key: str, created_at: float, family: Family, host: str, model: str, request: dict[str, Any],
                   rules: KeyRules) -> tuple[explain.NearMiss, Any, Any] | None:
    """The entry of the same endpoint and model, recorded before this one, that an entry's
    (unpacked) request came closest to: (near miss, that entry's canonical body, this one's)."""
    rows = cast(list[tuple[str, bytes]], list(
        CacheEntry.select(CacheEntry.key, CacheEntry.request)
        .where((CacheEntry.family == family.value) & (CacheEntry.host == host) & (CacheEntry.model == model)
               & (CacheEntry.key != key) & (CacheEntry.created_at < created_at))
        .order_by(CacheEntry.created_at.desc())
        .limit(NEIGHBOURS)
        .tuples()))
    bodies = {other: unpack_request(bytes(packed), rules, family)["body"] for other, packed in rows}
    miss = explain.near_miss(key, request["body"], bodies.items(), profile=request.get("profile", ""),
                             user_agent=request.get("user_agent", ""))
    return None if miss is None else (miss, bodies[miss.neighbour], request["body"])


# -- entries by key prefix (llmcache.explain, scripts/llm-cache) --

def entry_by_prefix(prefix: str) -> dict[str, Any]:
    """Every column of the one entry whose key starts with `prefix`. Raises KeyError when no entry,
    or more than one, has such a key."""
    rows = list(CacheEntry.select().where(CacheEntry.key.startswith(prefix.lower())).limit(2).dicts())
    if len(rows) != 1:
        raise KeyError(f"{'no' if not rows else 'more than one'} entry has a key starting with {prefix!r}")
    return cast(dict[str, Any], rows[0])


def explain_stored(key: str, rules: KeyRules = DEFAULT_RULES) -> tuple[explain.NearMiss, str] | None:
    """CacheStore.explain without a store: the near miss of the entry whose key starts with `key` and
    the config.yaml text of a rule that would have made it a hit; None when it has no differing
    neighbour. Raises KeyError when no entry (or more than one) has that key."""
    row = entry_by_prefix(key)
    family = Family(row["family"])
    request = unpack_request(bytes(row["request"]), rules, family)
    found = nearest_stored(row["key"], row["created_at"], family, row["host"], row["model"], request, rules)
    if found is None:
        return None
    miss, stored_body, new_body = found
    return miss, explain.suggestion(miss, stored_body, new_body)
