"""The command line's commands that look at the cache and change nothing (scripts/llm-cache stats, ls,
show, explain): text for people, or with --json one document (JSON Lines for lists) for pipes."""

import argparse
import sys
import time
import zlib
from typing import Any

import orjson

import cache_models
from llm_cache import cassettes, formats, inventory, readable, savings
from llm_cache.cli_args import entry_filter
from llm_cache.cli_config import key_rules
from llm_cache.cli_output import Failure, emit, human_size, money, table, when
from llm_cache.endpoints import Family
from llm_cache.keys import parse_json


def stats(args: argparse.Namespace, url: str) -> None:
    since = None if args.since is None else time.time() - args.since
    prices = savings.Prices()
    whole, models, hosts = savings.Saved(), dict[str, savings.Saved](), dict[str, savings.Saved]()
    for group in inventory.usage_groups(inventory.EntryFilter(used_since=since)):
        price = prices.of(group["host"], group["model"], group["input_tokens"], group["output_tokens"])
        for saved in (whole, models.setdefault(group["model"], savings.Saved()),
                      hosts.setdefault(group["host"], savings.Saved())):
            saved.add(group, price)
    rate = inventory.counted(since)
    if args.json:
        emit({"database": cache_models.redact_url(url), "since": since, "prices": prices.source,
              "counted": rate, **whole.document(),
              "models": [{"model": name, **saved.document()} for name, saved in sorted(models.items())],
              "hosts": [{"host": name, **saved.document()} for name, saved in sorted(hosts.items())]})
        return
    window = f" recorded or hit since {when(since)} (hit counts are totals)" if since is not None else ""
    print(f"database  {cache_models.redact_url(url)}")
    print(f"entries   {whole.entries:,}{window}, {human_size(whole.bytes)}, {whole.hits:,} hits")
    unpriced = (f" (+ {whole.unpriced_hits:,} hits of unknown price)" if whole.unpriced_hits and whole.priced_hits
                else "")
    print(f"saved     {whole.input_tokens:,} input and {whole.output_tokens:,} output tokens, "
          f"{money(whole.money_saved)}{unpriced} (prices: {prices.source})")
    if rate["hit_rate"] is not None:
        print(f"hit rate  {rate['hit_rate']:.1%}: {rate['hits']:,} hits, {rate['misses']:,} misses went upstream"
              + (f" (counted since {when(since)})" if since is not None else " (since the proxy counts them)"))
    for label, groups in (("model", models), ("host", hosts)):
        if groups:
            print()
            print(table([label, "entries", "size", "hits", "input saved", "output saved", "money saved"],
                        [[name, s.entries, human_size(s.bytes), s.hits, s.input_tokens, s.output_tokens,
                          money(s.money_saved) + (" +unknown" if s.unpriced_hits and s.priced_hits else "")]
                         for name, s in sorted(groups.items())]))


def ls(args: argparse.Namespace, url: str) -> None:
    rows = inventory.listed_entries(entry_filter(args, time.time()), limit=args.limit or None)
    if args.json:
        for row in rows:
            emit(_listed(row))
        return
    if not rows:
        print("no entries", file=sys.stderr)
        return
    print(table(["key", "recorded", "family", "model", "host", "hits", "kind", "size", "tags"],
                [[row["key"][:12], when(row["created_at"]), row["family"], row["model"], row["host"],
                  row["hit_count"], "stream" if row["is_stream"] else "json", human_size(row["size"]),
                  ",".join(cassettes.tags_of(row["tags"]))] for row in rows]))


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "is_stream": bool(row["is_stream"]), "tags": cassettes.tags_of(row["tags"])}


def show(args: argparse.Namespace, url: str) -> None:
    row = stored_entry(args.key)
    family = Family(row["family"])
    body = bytes(row["body"])
    request = parse_json(zlib.decompress(bytes(row["request"])))
    answer: Any
    if row["is_stream"]:
        answer = formats.assembled(family, body)
    else:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = body.decode("utf-8", "replace")
    meta = {name: row[name] for name in ("key", "family", "host", "model", "status", "created_at", "hit_count",
                                        "last_hit_at", "expires_at", "sample", "input_tokens", "output_tokens")}
    if args.json:
        emit({**meta, "is_stream": bool(row["is_stream"]), "tags": cassettes.tags_of(row["tags"]), "request": request,
              "answer": answer})
        return
    print(f"entry     {row['key']}")
    print(f"request   POST {request.get('url', '')}  ({row['family']}, {row['model']})")
    print(f"recorded  {when(row['created_at'])}, {row['hit_count']:,} hits (last {when(row['last_hit_at'])})"
          + (f", expires {when(row['expires_at'])}" if row["expires_at"] else "")
          + (f", tags {','.join(cassettes.tags_of(row['tags']))}" if row["tags"] else ""))
    if request.get("profile") or request.get("user_agent"):
        print(f"client    {request.get('user_agent') or '-'}" + (f" (profile {request['profile']})"
                                                                  if request.get("profile") else ""))
    if request.get("headers"):
        print("headers   " + ", ".join(f"{k}: {v}" for k, v in request["headers"].items()))
    print(f"usage     {row['input_tokens'] if row['input_tokens'] is not None else '?'} input, "
          f"{row['output_tokens'] if row['output_tokens'] is not None else '?'} output tokens")
    print("\n── request " + "─" * 60)
    print("\n".join(readable.request_lines(request.get("body"))))
    kind = "a stream, shown assembled" if row["is_stream"] else "JSON"
    print(f"\n── answer ({kind}) " + "─" * 50)
    print("\n".join(readable.answer_lines(answer)))


def stored_entry(key: str) -> dict[str, Any]:
    """The one entry whose key starts with `key`; a Failure when none, or more than one, does."""
    try:
        return cache_models.entry_by_prefix(key)
    except KeyError as e:
        raise Failure(e.args[0]) from None


def explain(args: argparse.Namespace, url: str) -> int:
    try:
        found = cache_models.explain_stored(args.key, key_rules())
    except KeyError as e:
        raise Failure(e.args[0]) from None
    if found is None:
        if args.json:
            emit(None)
        else:
            print(f"{args.key}: no earlier entry of the same endpoint and model differs from it by a few paths")
        return 0
    miss, rule = found
    if args.json:
        emit({"key": miss.key, "neighbour": miss.neighbour, "differing": miss.differing,
              "differences": [d._asdict() for d in miss.differences], "profile": miss.profile,
              "user_agent": miss.user_agent, "rule": rule})
    else:
        print(miss.describe())
        print()
        print(rule)
    return 0
