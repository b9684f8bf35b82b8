"""The page the proxy serves itself on a reserved host, as mitmproxy serves mitm.it:
`http://llm-cache.local/` through the proxy (llm_cache_dashboard_host) shows hits and misses per UTC
day, the hit rate, tokens and money saved per model, the newest entries and what the writer did this
run; `/api/stats.json` gives the same data. Loopback clients only, unless llm_cache_dashboard_clients
names other networks. Never a credential or a prompt: keys' first characters and metadata only.

The database is read on a helper thread (a few aggregate queries), never on mitmproxy's event loop;
the page itself is made by llm_cache.dashboard_page."""

import asyncio
import ipaddress
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from mitmproxy import http
from peewee import fn

import cache_models
from cache_models import CacheCount, CacheEntry
from llm_cache import inventory, messages, savings
from llm_cache.answering import Later
from llm_cache.dashboard_page import page
from llm_cache.policy import Network
from llm_cache.runtime import Runtime
from llm_cache.writes import utc_day

logger = logging.getLogger(__name__)

DAYS = 30  # of hits and misses shown
RECENT = 20  # newest entries shown
KEY_SHOWN = 12  # characters of a key, as mitmweb's comments show it
READ_TIMEOUT = 15.0  # seconds the page waits for the database before it says so
JSON_PATH = "/api/stats.json"
_HEADERS = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    # Nothing on the page runs or loads anything: a model name crafted as markup stays text.
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
]


def serve(rt: Runtime, flow: http.HTTPFlow) -> Later:
    """request: the answer to a request for the dashboard's host (to be awaited), or None for any other."""
    host = rt.settings.dashboard_host
    # The request's target, as a proxy client names it (http://llm-cache.local/ or CONNECT): ~0.1 us on
    # every request. mitm.it's `pretty_host` reads the Host header too, at ~15 us a request, for
    # transparent and reverse modes, where no client could reach a made-up host anyway.
    if not host or flow.request.host.lower().rstrip(".") != host:
        return None
    return _answer(rt, flow)


async def _answer(rt: Runtime, flow: http.HTTPFlow) -> None:
    flow.response = await _response(rt, flow)


async def _response(rt: Runtime, flow: http.HTTPFlow) -> http.Response:
    peer = client_address(flow.client_conn.peername)
    if not may_see(peer, rt.settings.dashboard_clients):
        return _text(403, f"llm-cache dashboard: {peer or 'this client'} is not a loopback client and not in "
                          "llm_cache_dashboard_clients")
    path = flow.request.path.split("?", 1)[0]
    if path not in ("/", JSON_PATH):
        return _text(404, f"llm-cache dashboard: no such page; see / or {JSON_PATH}")
    if flow.request.method != "GET":
        return _text(405, "llm-cache dashboard: only GET", [("allow", "GET")])
    store = rt.stores.get()
    if store is None:
        return _text(503, f"llm-cache dashboard: the cache database {rt.stores.redacted} is unavailable")
    try:
        data = await asyncio.wait_for(asyncio.to_thread(read, store, time.time()), READ_TIMEOUT)
    except TimeoutError:
        return _text(504, f"llm-cache dashboard: the cache database did not answer within {READ_TIMEOUT:.0f} s")
    except Exception as e:  # the page is not worth more than a line: the traffic goes on regardless
        logger.warning("llm-cache: the dashboard could not read the cache database (%s)", e)
        return _text(503, f"llm-cache dashboard: reading the cache database failed ({type(e).__name__})")
    if path == JSON_PATH:
        body = orjson.dumps(data, option=orjson.OPT_INDENT_2)
        return messages.make_response(200, body, [("content-type", "application/json"), *_HEADERS])
    return messages.make_response(200, page(data).encode(), [("content-type", "text/html; charset=utf-8"),
                                                              *_HEADERS])


def _text(status: int, line: str, headers: Sequence[tuple[str, str]] = ()) -> http.Response:
    return messages.make_response(status, line.encode() + b"\n",
                                  [("content-type", "text/plain; charset=utf-8"), *_HEADERS, *headers])


# -- who may see it (pure) -------------------------------------------------------------------------


def client_address(peername: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address from mitmproxy's peername ((host, port) or IPv6's 4-tuple); an IPv4 client
    of a dual-stack socket (::ffff:10.1.2.3) as the IPv4 address it is."""
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])
    except (TypeError, IndexError, ValueError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def may_see(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, allowed: Sequence[Network]) -> bool:
    """Loopback clients (127.0.0.0/8, ::1) always; others only within a network of llm_cache_dashboard_clients."""
    if address is None:
        return False
    return address.is_loopback or any(address.version == network.version and address in network
                                      for network in allowed)


# -- what it shows: read on a helper thread --------------------------------------------------------


def read(store: cache_models.CacheStore, now: float) -> dict[str, Any]:
    """Everything the dashboard shows, from a few aggregate queries on this thread's own connection
    (closed after, so the helper threads keep none open)."""
    with cache_models.database.connection_context():
        stats = store.stats()  # sends this proxy's pending counts to the writer and waits for them
        prices = _priced()
        return document(stats, per_day(utc_day(now - (DAYS - 1) * 86400)), saved_per_model(prices),
                        recent_entries(RECENT), now, prices.source)


def per_day(first_day: str) -> list[tuple[str, int, int]]:
    """(day, hits, misses) the proxies counted, from `first_day` (YYYY-MM-DD, UTC) on."""
    query = (CacheCount
             .select(CacheCount.day, fn.SUM(CacheCount.hits), fn.SUM(CacheCount.misses))
             .where(CacheCount.day >= first_day)
             .group_by(CacheCount.day)
             .order_by(CacheCount.day)
             .tuples())
    rows = cast(list[tuple[str, int | None, int | None]], list(query))
    return [(day, int(hits or 0), int(misses or 0)) for day, hits, misses in rows]


_prices: savings.Prices | None = None


def _priced() -> savings.Prices:
    global _prices
    if _prices is None:  # genai-prices takes 0.3 s to import: once, on the first view
        _prices = savings.Prices()
    return _prices


def saved_per_model(prices: savings.Prices) -> dict[str, savings.Saved]:
    """What each model's hits saved, as `scripts/llm-cache stats` counts it (entries' usage times their hits)."""
    models: dict[str, savings.Saved] = {}
    for group in inventory.usage_groups():
        price = prices.of(group["host"], group["model"], group["input_tokens"], group["output_tokens"])
        models.setdefault(group["model"], savings.Saved()).add(group, price)
    return models


def recent_entries(limit: int) -> list[dict[str, Any]]:
    """The newest entries' metadata: never their requests or answers."""
    query = (CacheEntry
             .select(CacheEntry.key, CacheEntry.created_at, CacheEntry.model, CacheEntry.host, CacheEntry.family,
                     CacheEntry.hit_count, CacheEntry.is_stream)
             .order_by(CacheEntry.created_at.desc(), CacheEntry.key)
             .limit(limit)
             .dicts())
    return cast(list[dict[str, Any]], list(query))


# -- the data, as the page and the JSON show it (pure) ---------------------------------------------


def document(stats: dict[str, Any], days: Sequence[tuple[str, int, int]], models: dict[str, savings.Saved],
             recent: Sequence[dict[str, Any]], now: float, prices: str | None = None) -> dict[str, Any]:
    """The dashboard's data: plain JSON types, with no prompt, answer or credential in it."""
    counted = {day: (hits, misses) for day, hits, misses in days}
    shown = [(day, *counted.get(day, (0, 0))) for day in last_days(now, DAYS)]
    hits, misses = sum(row[1] for row in shown), sum(row[2] for row in shown)
    return {
        "generated_at": _iso(now),
        "database": _shown(stats["database"]),
        "entries": stats["entries"],
        "days": [{"day": day, "hits": day_hits, "misses": day_misses} for day, day_hits, day_misses in shown],
        "window": {"days": DAYS, "hits": hits, "misses": misses, "hit_rate": _rate(hits, misses)},
        "counted": {name: stats["counted"][name] for name in ("hits", "misses", "hit_rate")},
        "models": [{"model": name, **_saved(saved)} for name, saved in
                   sorted(models.items(), key=lambda item: (-item[1].hits, item[0]))],
        "recent": [_entry(row) for row in recent],
        "writes": {name: stats["writes"][name] for name in ("stored", "lost", "waiting", "lost_by_cause", "retrying")},
        "prices": prices,
    }


def last_days(now: float, count: int) -> list[str]:
    """The `count` UTC days up to and including today's, oldest first."""
    return [utc_day(now - back * 86400) for back in range(count - 1, -1, -1)]


def _rate(hits: int, misses: int) -> float | None:
    return hits / (hits + misses) if hits + misses else None


def _saved(saved: savings.Saved) -> dict[str, Any]:
    money = saved.money_saved
    return {"entries": saved.entries, "hits": saved.hits, "input_tokens_saved": saved.input_tokens,
            "output_tokens_saved": saved.output_tokens,
            "money_saved_usd": float(money) if money is not None else None,  # None: unknown
            "unpriced_hits": saved.unpriced_hits}


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"][:KEY_SHOWN], "created_at": _iso(row["created_at"]), "model": row["model"],
            "host": row["host"], "family": row["family"], "hits": row["hit_count"],
            "format": "stream" if row["is_stream"] else "JSON"}


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(url: str) -> str:
    """The database as the page names it: a SQLite file by its name (its folder is in the proxy's
    start line), a server without its query string (which may carry a password)."""
    url = url.split("?", 1)[0]
    return "sqlite: " + url.rsplit("/", 1)[-1] if url.startswith("sqlite:") else url
