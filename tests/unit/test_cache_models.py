"""Storage through peewee, on SQLite and (when LLM_CACHE_TEST_POSTGRES names one) PostgreSQL."""

import logging
import re
import socket
import sqlite3
import threading

import pytest

import cache_models
from cache_models import CacheEntry, CacheStore, resolve_db_url
from llm_cache import batches, writes
from llm_cache.records import Record, unpack_request
from tests.support.databases import fresh_database
from tests.support.procs import wait_for

REQUEST = b'{"model": "gpt", "messages": [], "stream": true}'
USAGE = b', "usage": {"prompt_tokens": 3, "completion_tokens": 4}'


def record(key="a" * 64, body=b'{"choices": []}', created_at=100.0, request_body=REQUEST):
    return Record(key=key, status=200, headers=[("content-type", "application/json")], body=body,
                  is_stream=False, created_at=created_at, family="openai.chat", host="api.openai.com",
                  model="gpt", url="https://api.openai.com:443/v1/chat/completions", request_body=request_body)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    return fresh_database(request.param, tmp_path)


@pytest.fixture
def store(db_url):
    store = CacheStore(db_url)
    yield store
    store.close()


def test_postgresql_connections_time_out(store):
    if store.url.startswith("postgresql"):
        assert store.db.connect_params["connect_timeout"] == cache_models.CONNECT_TIMEOUT
    else:
        assert "connect_timeout" not in store.db.connect_params


def test_put_is_visible_at_once_and_after_the_commit(store):
    store.put(record())
    assert store.find("a" * 64) is not None  # from memory, before the writer commits
    store.flush()
    found = store.find("a" * 64)
    assert found is not None
    assert (found.status, found.headers, found.body, found.is_stream, found.created_at, found.family) == (
        200, [("content-type", "application/json")], b'{"choices": []}', False, 100.0, "openai.chat")
    assert store.find("b" * 64) is None


def test_entries_survive_a_reopen(db_url):
    first = CacheStore(db_url)
    first.put(record(body=b"kept"))
    first.close()
    second = CacheStore(db_url)
    try:
        assert second.find("a" * 64).body == b"kept"
    finally:
        second.close()


def test_a_new_recording_overwrites_but_keeps_the_hit_count(store):
    store.put(record(body=b"old"))
    store.touch("a" * 64, 200.0)
    store.touch("a" * 64, 300.0)
    store.flush()
    store.put(record(body=b"new", created_at=400.0))
    store.flush()
    row = CacheEntry.get_by_id("a" * 64)
    assert (bytes(row.body), row.created_at, row.hit_count, row.last_hit_at) == (b"new", 400.0, 2, 300.0)


def test_stats_and_clear(store):
    store.put(record(key="a" * 64, body=b'{"choices": []' + USAGE + b"}"))
    store.put(record(key="b" * 64))
    store.touch("b" * 64, 1.0)
    stats = store.stats()
    assert stats["entries"] == 2 and stats["hits"] == 1
    assert stats["families"]["openai.chat"]["bytes"] == 2 * len(b'{"choices": []}') + len(USAGE)
    row = CacheEntry.get_by_id("a" * 64)
    assert (row.input_tokens, row.output_tokens) == (3, 4)
    assert unpack_request(bytes(row.request)) == {  # canonical: no transport fields
        "url": "https://api.openai.com:443/v1/chat/completions", "headers": {}, "profile": "", "user_agent": "",
        "body": {"messages": [], "model": "gpt"}}
    assert store.clear() == 2
    assert store.find("a" * 64) is None


def test_many_writes_from_many_threads_all_land(store):
    def write(offset):
        for i in range(50):
            store.put(record(key=f"{offset + i:064d}"))

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.stats()["entries"] == 200


def test_a_failing_write_is_logged_and_forgotten(store, caplog):
    with caplog.at_level(logging.WARNING):
        store.put(record()._replace(status=None))  # NOT NULL fails inside the writer process
        store.flush()
    assert "lost 1 entry: could not write to" in caplog.text and re.search("not.null", caplog.text, re.IGNORECASE)
    assert "Failing row" not in caplog.text  # PostgreSQL's DETAIL line would quote the row
    assert store.find("a" * 64) is None  # nothing half-written is ever served
    store.put(record(key="b" * 64))  # and the writer goes on
    store.flush()
    assert store.find("b" * 64) is not None


def test_a_dead_writer_is_started_again_and_gets_every_write_it_had_not_settled(store, caplog):
    store.put(record())
    store.flush()
    with caplog.at_level(logging.INFO):
        store._writer._process.kill()
        assert wait_for(lambda: store._writer.dead is not None)
        assert store.find("a" * 64) is not None  # reads go on
        store.put(record(key="b" * 64))  # kept, and sent to the next writer
        assert store.find("b" * 64) is not None
        assert wait_for(lambda: store._writer.dead is None, timeout=10)
        store.flush()
        assert wait_for(lambda: store._writer.unsettled == 0, timeout=10)
    assert "the writer process stopped" in caplog.text and "starting it again" in caplog.text
    assert "the writer process runs again; 1 writes sent to it again" in caplog.text
    assert CacheEntry.get_or_none(CacheEntry.key == "b" * 64) is not None
    assert store.stats()["writes"]["stored"] == 2


def test_a_writer_too_far_behind_costs_hit_counts_never_a_hit(store, monkeypatch):
    store.put(record())
    store.flush()

    def behind(op):
        raise RuntimeError("the writer process is over 256 MB behind")

    monkeypatch.setattr(store._writer, "submit", behind)
    monkeypatch.setattr(cache_models, "HIT_COUNT_INTERVAL", 0.0)  # every touch sends its counts
    store.touch("a" * 64, 1.0)  # must not raise: a hit is answered before it is counted
    assert store.find("a" * 64) is not None
    with pytest.raises(RuntimeError, match="behind"):
        store.put(record(key="b" * 64))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite:///cache.sqlite3", "sqlite:////conf/cache.sqlite3"),
        ("sqlite:///sub/dir/c.db", "sqlite:////conf/sub/dir/c.db"),
        ("sqlite:////abs/c.db", "sqlite:////abs/c.db"),
        ("postgresql://u:p@db.internal:5432/cache", "postgresql://u:p@db.internal:5432/cache"),
        ("postgres://db/cache", "postgres://db/cache"),
    ],
)
def test_database_urls_resolve_against_the_confdir(url, expected):
    assert resolve_db_url(url, "/conf") == expected


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://db/x", "one of the schemes sqlite, postgres, postgresql"),
        ("/tmp/cache.db", "one of the schemes"),
        ("sqlite:///:memory:", "in-memory database"),
        ("sqlite://", "needs a SQLite file"),
        ("postgresql://db.internal", "names no database"),
    ],
)
def test_bad_database_urls_are_refused_clearly(url, message):
    with pytest.raises(ValueError, match=message):
        resolve_db_url(url, "/conf")


def test_passwords_never_reach_the_logs():
    assert cache_models.redact_url("postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"
    assert cache_models.redact_url("sqlite:////x") == "sqlite:////x"


def test_a_corrupt_sqlite_file_fails_to_open(tmp_path):
    path = tmp_path / "corrupt.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(Exception, match="not a database|file is encrypted"):
        CacheStore(f"sqlite:///{path}")


def test_one_unstorable_entry_does_not_cost_the_batch(store, caplog):
    with caplog.at_level(logging.WARNING):
        store.put(record(key="a" * 64)._replace(family="no.such.family"))
        store.put(record(key="b" * 64))
        store.flush()
    assert store.find("b" * 64) is not None and store.find("a" * 64) is None
    assert "not storing entry aaaaaaaaaaaa" in caplog.text


def test_an_unreachable_postgresql_fails_fast():
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(Exception, match="Connection refused|could not connect"):
        cache_models.open_database(f"postgresql://nobody@127.0.0.1:{port}/nothing")
    assert time.monotonic() - start < cache_models.CONNECT_TIMEOUT + 2


def test_invalidate_by_tag_model_and_host(store):
    def put(key, **changes):
        store.put(record(key=key * 64)._replace(**changes))
    put("a", tags=("run-1", "x_y"))
    put("b", tags=("run-2",), model="claude")
    put("c", tags=("xzy",), host="api.groq.com")
    assert store.invalidate(tag="run") == 0 and store.invalidate(tag="x_y") == 1  # exact tags, "_" is no wildcard
    assert store.invalidate(model="claude") == 1 and store.invalidate(host="API.GROQ.COM") == 1
    assert store.stats()["entries"] == 0


def test_recent_requests_are_the_newest_of_one_endpoint(store):
    for n, host in enumerate(["api.openai.com", "api.openai.com", "other.host"]):
        store.put(record(key=str(n) * 64, created_at=float(n))._replace(host=host))
    rows = store.recent_requests("openai.chat", "api.openai.com")
    assert [key[0] for key, _, _ in rows] == ["1", "0"]
    assert unpack_request(rows[0][2])["body"] == {"model": "gpt", "messages": []}


def test_the_scope_secret_is_made_once_and_shared(db_url, store):
    other = CacheStore(db_url)
    try:
        assert store.credential_tag("sk-a") == other.credential_tag("sk-a") != store.credential_tag("sk-b")
        assert "sk-a" not in store.credential_tag("sk-a")
    finally:
        other.close()


def test_an_older_cache_gets_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # the table as the first release made it
        db.execute('CREATE TABLE "cache_entry" ("key" VARCHAR(64) NOT NULL PRIMARY KEY, "family" VARCHAR(32) NOT NULL, '
                   '"status" INTEGER NOT NULL, "is_stream" INTEGER NOT NULL, "created_at" REAL NOT NULL, '
                   '"host" VARCHAR(255) NOT NULL, "model" VARCHAR(255) NOT NULL, "input_tokens" INTEGER, '
                   '"output_tokens" INTEGER, "hit_count" INTEGER NOT NULL, "last_hit_at" REAL, '
                   '"headers" TEXT NOT NULL, "body" BLOB NOT NULL, "request" BLOB NOT NULL)')
        db.execute("INSERT INTO cache_entry VALUES (?, 'openai.chat', 200, 0, 1.0, 'h', 'm', NULL, NULL, 0, NULL, "
                   "'[]', X'7B7D', X'00')", ("d" * 64,))
    store = CacheStore(f"sqlite:///{path}")
    try:
        old = store.find("d" * 64)
        assert old is not None and old.body == b"{}" and old.expires_at is None
        store.put(record()._replace(tags=("t",), expires_at=5.0))
        store.flush()
        assert store.find("a" * 64).expires_at == 5.0 and store.invalidate(tag="t") == 1
    finally:
        store.close()


def test_cache_files_are_made_private_and_old_ones_narrowed(tmp_path, caplog):
    fresh = tmp_path / "new.sqlite3"
    cache_models.keep_private(str(fresh))
    assert fresh.stat().st_mode & 0o777 == 0o600
    old = tmp_path / "old.sqlite3"
    for name in (old, tmp_path / "old.sqlite3-wal"):
        name.write_bytes(b"")
        name.chmod(0o644)
    caplog.set_level(logging.INFO)
    cache_models.keep_private(str(old))
    assert old.stat().st_mode & 0o777 == 0o600 and (tmp_path / "old.sqlite3-wal").stat().st_mode & 0o777 == 0o600
    assert "was readable by other users; now by its owner only" in caplog.text


@pytest.mark.parametrize(("message", "cause"), [
    ("database is locked", "the database is locked by another process"),
    ("database or disk is full", "the disk is full"),
    ("attempt to write a readonly database", "the database is read-only"),
    ("disk I/O error", "a disk I/O error"),
    ("no such table: cache_entry", "the database file was replaced"),
    ("UNIQUE constraint failed: cache_entry.key", None),
])
def test_write_failures_that_may_pass_are_told_apart_from_those_that_will_not(message, cause):
    assert writes.transient_cause(sqlite3.OperationalError(message)) == cause


def test_a_lost_server_connection_may_pass():
    import peewee
    import psycopg2

    cause = writes.transient_cause(psycopg2.OperationalError("server closed the connection unexpectedly"),
                                         remote=True)
    assert cause is not None and cause.startswith("the database server cannot be reached")
    assert writes.transient_cause(peewee.InterfaceError("connection already closed"), remote=True)
    assert writes.transient_cause(peewee.InterfaceError("connection already closed")) is None  # SQLite


def test_upkeep_deletes_expired_entries_then_evicts_the_least_recently_used(store):
    body = b'{"choices": []}' + b" " * 10_000
    for n, created in enumerate([100.0, 200.0, 300.0, 400.0]):
        store.put(record(key=f"{n}" * 64, body=body, created_at=created))
    store.put(record(key="e" * 64, body=body, created_at=500.0)._replace(expires_at=600.0))
    store.flush()
    CacheEntry.update(last_hit_at=900.0).where(CacheEntry.key == "2" * 64).execute()
    one = CacheEntry.select(cache_models.ENTRY_SIZE).where(CacheEntry.key == "0" * 64).scalar()
    assert one > 10_000

    kept = writes.Upkeep(max_size=0, ttl=0, delete_expired=False)  # stale-if-error may still serve it
    assert batches.upkeep(kept, now=1000.0) == writes.Removed(0, 0, 0)
    removed = batches.upkeep(writes.Upkeep(max_size=int(one * 2.5)), now=1000.0)
    # the expired one goes first; then the two least recently used (by last hit, else by creation)
    assert (removed.expired, removed.evicted) == (1, 2) and removed.evicted_bytes == 2 * one
    assert sorted(key[0] for key, in CacheEntry.select(CacheEntry.key).tuples()) == ["2", "3"]
    assert batches.upkeep(writes.Upkeep(ttl=650), now=1000.0).expired == 1  # 300 < 1000 - 650
    assert [key[0] for key, in CacheEntry.select(CacheEntry.key).tuples()] == ["3"]


def test_the_writer_keeps_the_cache_under_its_bound(store, caplog):
    caplog.set_level(logging.INFO)
    body = b'{"choices": []}' + b" " * 10_000
    for n in range(4):
        store.put(record(key=f"{n}" * 64, body=body, created_at=100.0 + n))
    store.flush()
    store.set_upkeep(writes.Upkeep(max_size=25_000))
    store.put(record(key="9" * 64, body=body, created_at=200.0))  # the first batch after a new bound applies it
    store.flush()
    assert wait_for(lambda: store.stats()["entries"] <= 2)
    assert sorted(key[0] for key, in CacheEntry.select(CacheEntry.key).tuples())[-1] == "9"
    assert wait_for(lambda: "least recently used" in caplog.text)
    assert store.writes["evicted"] >= 3


def test_vectors_are_found_by_context_and_embedder_joined_with_their_entries(store):
    from llm_cache.records import Embedded
    from llm_cache.vector_index import VectorIndex

    store.vectors = VectorIndex(cache_models.SIMILAR_AT_MOST, refresh=0)  # every lookup reads the database

    def put(key, context="c" * 64, embedder="e", vector=b"\x00\x00\x80?"):
        store.put(record(key=key * 64)._replace(semantic=Embedded(context, embedder, f"turn {key}", vector)))

    def similar(block_after):
        return sorted(key[0] for key in store.similar("c" * 64, "e", block_after).keys)

    put("a")
    put("b")
    put("c", context="d" * 64)
    put("d", embedder="other")
    store.flush()
    assert similar(3) == ["a", "b"]
    assert store.similar("c" * 64, "e", 3).matrix.tolist() == [[1.0], [1.0]]
    assert store.turns(["a" * 64, "c" * 64, "z" * 64]) == {"a" * 64: "turn a", "c" * 64: "turn c"}
    store.report_semantic(["a" * 64])
    store.flush()
    assert similar(1) == ["b"]  # blocked after 1 report
    assert similar(0) == ["a", "b"]  # 0: never blocked
    store.reject(["b" * 64])  # a rejected entry's vector goes with it
    store.flush()
    assert similar(0) == ["a"]
    put("a")  # recorded anew: a new answer, no reports
    store.flush()
    assert similar(1) == ["a"]
    CacheEntry.delete().where(CacheEntry.key == "a" * 64).execute()  # deleted by the command line
    assert similar(0) == []  # its vector is never read
    batches.upkeep(writes.Upkeep(), 0.0)
    assert cache_models.CacheVector.select().where(cache_models.CacheVector.key == "a" * 64).count() == 0
