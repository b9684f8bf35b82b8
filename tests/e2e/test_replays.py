"""A hit is a replay as mitmproxy's server replay makes one: today's Date, unless
llm_cache_refresh_date keeps the recorded one (a real mitmdump, the openai SDK)."""

import sqlite3
import time
from email.utils import parsedate_to_datetime

import orjson

from tests.e2e.control_helpers import chat, options, point_agent_at
from tests.support.procs import Mitmdump

OLD = "Mon, 01 Jan 2024 00:00:00 GMT"


def test_a_hit_gets_todays_date_unless_the_recorded_one_is_kept(tmp_path, certs, fake, monkeypatch, prompt):
    db = tmp_path / "cache.sqlite3"
    recorder = Mitmdump(tmp_path / "a", certs=certs, fake=fake, db_url=f"sqlite:///{db}")
    point_agent_at(recorder, monkeypatch)
    chat(prompt)
    recorder.stop()
    with sqlite3.connect(db) as connection:  # as if recorded long ago
        (headers,), = connection.execute("SELECT headers FROM cache_entry").fetchall()
        aged = [[name, OLD if name.lower() == "date" else value] for name, value in orjson.loads(headers)]
        assert any(name.lower() == "date" for name, _ in aged), "the fake provider sends a Date"
        connection.execute("UPDATE cache_entry SET headers = ?", (orjson.dumps(aged).decode(),))

    for refresh, dated in ((True, "today"), (False, OLD)):
        proxy = Mitmdump(tmp_path / f"b{refresh}", certs=certs, fake=fake, db_url=f"sqlite:///{db}",
                         extra=options(refresh_date=refresh))
        try:
            point_agent_at(proxy, monkeypatch)
            headers, _ = chat(prompt)
            assert headers["x-llm-cache"] == "HIT"
            if dated == "today":
                assert abs(parsedate_to_datetime(headers["date"]).timestamp() - time.time()) < 60
            else:
                assert headers["date"] == OLD
        finally:
            proxy.stop()
