"""The dashboard's data and page from given numbers, who may see it, and its queries on a real store."""

import ipaddress
import re
import time
from decimal import Decimal

import orjson
import pytest

from cache_models import CacheStore
from llm_cache import dashboard, options, policy, savings
from llm_cache.dashboard_page import money, page
from llm_cache.records import Record

NOW = 1_780_000_000.0  # 2026-05-28, UTC
TODAY, YESTERDAY = "2026-05-28", "2026-05-27"
PROMPT = "my secret plan for the launch"
STATS = {"database": "postgresql://cache:***@db/llm?password=hunter2", "entries": 7,
         "counted": {"hits": 40, "misses": 10, "hit_rate": 0.8, "input_tokens_saved": 1, "output_tokens_saved": 1},
         "writes": {"stored": 5, "lost": 1, "waiting": 2, "lost_by_cause": {"the disk is full": 1}, "retrying": None}}


def saved(hits, input_tokens, output_tokens, price):
    group = {"entries": 1, "bytes": 10, "hits": hits, "input_tokens": input_tokens, "output_tokens": output_tokens}
    result = savings.Saved()
    result.add(group, price)
    return result


def data(**changes):
    models = {"gpt-4o-mini": saved(3, 100, 20, Decimal("0.001")), "<script>alert(1)</script>": saved(2, 5, 5, None)}
    recent = [{"key": "3c5f894ad874" + "0" * 52, "created_at": NOW - 60, "model": "gpt-4o-mini",
               "host": "api.openai.com", "family": "openai.chat", "hit_count": 3, "is_stream": True,
               "request": PROMPT, "tags": ",nightly,"}]  # columns the dashboard must not pass on
    args = {"stats": STATS, "days": [(YESTERDAY, 4, 6), (TODAY, 12, 3), ("2020-01-01", 99, 99)],
            "models": models, "recent": recent, "now": NOW, "prices": "genai-prices 9"} | changes
    return dashboard.document(**args)


def test_the_document_fills_thirty_days_and_sums_them():
    doc = data()
    assert len(doc["days"]) == 30 and doc["days"][0]["day"] == "2026-04-29" and doc["days"][-1]["day"] == TODAY
    assert doc["days"][-2:] == [{"day": YESTERDAY, "hits": 4, "misses": 6}, {"day": TODAY, "hits": 12, "misses": 3}]
    assert doc["window"] == {"days": 30, "hits": 16, "misses": 9, "hit_rate": 16 / 25}
    assert doc["counted"] == {"hits": 40, "misses": 10, "hit_rate": 0.8}
    assert doc["writes"]["stored"] == 5 and doc["writes"]["lost_by_cause"] == {"the disk is full": 1}


def test_the_document_holds_metadata_only():
    doc = data()
    assert doc["recent"] == [{"key": "3c5f894ad874", "created_at": "2026-05-28 20:25:40 UTC", "model": "gpt-4o-mini",
                              "host": "api.openai.com", "family": "openai.chat", "hits": 3, "format": "stream"}]
    assert doc["database"] == "postgresql://cache:***@db/llm"
    text = orjson.dumps(doc).decode()
    assert PROMPT not in text and "hunter2" not in text and "nightly" not in text


def test_money_is_priced_or_unknown():
    by_model = {m["model"]: m for m in data()["models"]}
    assert by_model["gpt-4o-mini"]["money_saved_usd"] == pytest.approx(0.003)
    assert by_model["<script>alert(1)</script>"]["money_saved_usd"] is None
    assert [money(0.003, 0), money(None, 2), money(12.5, 1), money(0.0, 0)] == \
        ["$0.003", "unknown", "$12.50 + unknown", "$0"]


def test_the_page_draws_svg_bars_and_shows_the_numbers():
    html = page(data())
    assert html.count("<svg") == 2 and "<script>" not in html and "http" not in html.replace("/api/stats.json", "")
    assert len(re.findall(r'<rect class="hits" ', html)) == 30 and len(re.findall(r'<rect class="misses" ', html)) == 30
    assert '<title>2026-05-28: 12 hits, 3 misses</title>' in html
    assert re.search(r'<rect class="hits" x="[\d.]+" y="0\.0" width="[\d.]+" height="144\.0"/>', html)  # 12 of 15
    stats = dict(re.findall(r'data-stat="(\w+)">([^<]*)<', html))
    assert stats == {"hit_rate": "64.0%", "hits": "16", "misses": "9", "hit_rate_all": "80.0%", "stored": "5",
                     "lost": "1", "waiting": "2"}
    assert "$0.003" in html and ">unknown<" in html and "3c5f894ad874" in html and "the disk is full" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # a model's name stays text
    assert PROMPT not in html and "hunter2" not in html


def test_an_empty_cache_has_a_page():
    html = page(dashboard.document({**STATS, "entries": 0, "counted": {"hits": 0, "misses": 0, "hit_rate": None}},
                                   [], {}, [], NOW))
    assert 'data-stat="hit_rate">–<' in html and "No entries yet." in html and "No tokens saved yet." in html


LOOPBACK_ONLY: tuple[policy.Network, ...] = ()
TEN = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize("peername, allowed, sees", [
    (("127.0.0.1", 5000), LOOPBACK_ONLY, True),
    (("127.8.9.10", 5000), LOOPBACK_ONLY, True),
    (("::1", 5000, 0, 0), LOOPBACK_ONLY, True),
    (("::ffff:127.0.0.1", 5000, 0, 0), LOOPBACK_ONLY, True),
    (("10.1.2.3", 5000), LOOPBACK_ONLY, False),
    (("192.168.0.1", 22), LOOPBACK_ONLY, False),
    (("10.1.2.3", 5000), TEN, True),
    (("::ffff:10.1.2.3", 5000, 0, 0), TEN, True),
    (("fd12::7", 5000, 0, 0), TEN, True),
    (("192.168.0.1", 22), TEN, False),
    (("fe80::1%eth0", 5000, 0, 2), TEN, False),
    (None, TEN, False),
])
def test_who_may_see_the_dashboard(peername, allowed, sees):
    assert dashboard.may_see(dashboard.client_address(peername), allowed) is sees


def settings(**values):
    return options.settings_from_values(
        lambda name: values.get(name.removeprefix("llm_cache_"), options.DEFAULTS[name.removeprefix("llm_cache_")]))


def test_the_options_parse():
    default = settings()
    assert (default.dashboard_host, default.dashboard_clients) == ("llm-cache.local", ())
    assert default.dashboard_host == policy.Settings().dashboard_host
    custom = settings(dashboard_host=" Stats.Local. ", dashboard_clients=["10.0.0.0/8", "192.168.1.7"])
    assert custom.dashboard_host == "stats.local"
    assert custom.dashboard_clients == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.7/32"))
    assert settings(dashboard_host="").dashboard_host == ""


@pytest.mark.parametrize("values, message", [
    ({"dashboard_host": "llm-cache.local:8080"}, "llm_cache_dashboard_host must be a host name"),
    ({"dashboard_host": "http://llm-cache.local/"}, "llm_cache_dashboard_host must be a host name"),
    ({"dashboard_clients": ["10.0.0.0/33"]}, "llm_cache_dashboard_clients: '10.0.0.0/33' is not a network"),
    ({"dashboard_clients": ["office"]}, "llm_cache_dashboard_clients: 'office' is not a network"),
])
def test_bad_options_say_what_is_expected(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        settings(**values)


def test_read_counts_from_a_real_store(tmp_path):
    store = CacheStore(f"sqlite:///{tmp_path}/cache.sqlite3")
    try:
        now = time.time()
        body = b'{"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 4}}'
        request = b'{"model": "gpt-4o-mini", "messages": [{"content": "%s"}]}' % PROMPT.encode()
        for n in range(3):
            store.put(Record(key=f"{n}" * 64, status=200, headers=[("content-type", "application/json")], body=body,
                             is_stream=False, created_at=now - 10 + n, family="openai.chat", host="api.openai.com",
                             model="gpt-4o-mini", url="https://api.openai.com:443/v1/chat/completions",
                             request_body=request))
            store.missed("openai.chat", "api.openai.com", "gpt-4o-mini", now)
        store.flush()
        store.touch("0" * 64, now)
        store.touch("0" * 64, now)
        doc = dashboard.read(store, now)
    finally:
        store.close()
    assert doc["window"] == {"days": 30, "hits": 2, "misses": 3, "hit_rate": 0.4}
    assert [e["key"] for e in doc["recent"]] == ["2" * 12, "1" * 12, "0" * 12]
    assert {e["format"] for e in doc["recent"]} == {"JSON"}
    [model] = doc["models"]
    assert (model["model"], model["hits"], model["input_tokens_saved"], model["output_tokens_saved"]) == \
        ("gpt-4o-mini", 2, 60, 8)
    assert model["money_saved_usd"] > 0 and doc["writes"]["stored"] == 3
    assert PROMPT not in orjson.dumps(doc).decode() + page(doc)
