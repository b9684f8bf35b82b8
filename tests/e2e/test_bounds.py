"""A bounded cache through real mitmdump processes: llm_cache_max_size evicts the least recently
used entries, and expired ones are deleted, not only hidden."""

import sqlite3

from tests.e2e.control_helpers import chat, options, point_agent_at
from tests.support.procs import Mitmdump, wait_for


def entries(db) -> dict[str, int]:
    """The stored prompts' last words and the size of each entry, as the writer weighs them."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT key, LENGTH(body) + COALESCE(LENGTH(assembled), 0) + LENGTH(request) "
                                  "FROM cache_entry").fetchall()
    return dict(rows)


def test_a_cache_over_its_max_size_evicts_the_least_recently_used(tmp_path, certs, fake, monkeypatch, prompt):
    db = tmp_path / "cache.sqlite3"
    recorder = Mitmdump(tmp_path / "a", certs=certs, fake=fake, db_url=f"sqlite:///{db}")
    point_agent_at(recorder, monkeypatch)
    for n in range(6):
        chat(f"{prompt} number {n}")
    recorder.stop()
    sizes = entries(db)
    assert len(sizes) == 6
    room = int(sum(sizes.values()) / 6 * 3.5)  # three of the six, and half of a fourth

    bounded = Mitmdump(tmp_path / "b", certs=certs, fake=fake, db_url=f"sqlite:///{db}",
                       extra=options(max_size=room))
    try:
        point_agent_at(bounded, monkeypatch)
        # A new bound applies with the writer's first batch: the oldest go, to 90% of it.
        assert wait_for(lambda: len(entries(db)) == 3, timeout=10)
        before = fake.calls()
        assert chat(f"{prompt} number 5")[0]["x-llm-cache"] == "HIT"
        assert chat(f"{prompt} number 0")[0]["x-llm-cache"] == "MISS"  # evicted: asked upstream again
        assert fake.calls() == before + 1
    finally:
        bounded.stop()
    assert "evicted 3 least recently used" in bounded.text()


def test_expired_entries_are_deleted_unless_stale_if_error_may_serve_them(tmp_path, certs, fake, monkeypatch,
                                                                          prompt):
    db = tmp_path / "cache.sqlite3"
    recorder = Mitmdump(tmp_path / "a", certs=certs, fake=fake, db_url=f"sqlite:///{db}")
    point_agent_at(recorder, monkeypatch)
    chat(f"{prompt} old")
    recorder.stop()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE cache_entry SET created_at = created_at - 7200")

    stale = Mitmdump(tmp_path / "b", certs=certs, fake=fake, db_url=f"sqlite:///{db}",
                     extra=options(ttl=3600, stale_if_error=True))
    stale.stop()
    assert len(entries(db)) == 1  # stale-if-error may still serve it

    fresh = Mitmdump(tmp_path / "c", certs=certs, fake=fake, db_url=f"sqlite:///{db}", extra=options(ttl=3600))
    try:
        assert wait_for(lambda: not entries(db), timeout=10)
    finally:
        fresh.stop()
    assert "deleted 1 expired entries" in fresh.text()
