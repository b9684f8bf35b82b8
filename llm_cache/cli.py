"""scripts/llm-cache: the cache database from a shell. Statistics with the money hits saved, listing
and showing entries, cassettes (export / import), pruning, clearing, invalidating, explaining near
misses.

It reads and writes the database itself (cache_models' plain functions), never through a CacheStore:
no writer process, so it runs beside a proxy using the same cache. Output is text for people, or
`--json` (one document; JSON Lines for lists) for pipes.

A cassette is JSON Lines, sorted by key, one entry per line, every entry's fields in one fixed order
and its bodies in the order they were recorded, so the same entry always writes the same line and a
diff shows what changed. Streams are lists of events, the request is the readable request. Each body
is checked to be rebuilt byte for byte when it is written; one that would not be (an unusual layout)
is kept as text, so a replay from an imported cassette answers exactly what was recorded.
"""

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
from peewee import DatabaseError

import cache_models
from llm_cache import cassettes, formats, inventory, options, readable, savings
from llm_cache.endpoints import Family
from llm_cache.keys import parse_json
from llm_cache.normalise import KeyRules

ROOT = Path(__file__).resolve().parents[1]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class Failure(Exception):
    """A command cannot do what was asked: the message is for the user, the exit status is 1."""


# -- arguments ------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '15m', '12h', '7d', '2w' (also '1.5h'). Raises ValueError."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _DURATION_UNITS else ""
    try:
        number = float(value[:len(value) - len(unit)])
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (want e.g. 90s, 15m, 12h, 7d, 2w)") from None
    if number < 0 or number != number:
        raise ValueError(f"not a duration: {text!r} (want 0 or more, e.g. 90s, 15m, 12h, 7d, 2w)")
    return number * _DURATION_UNITS.get(unit, 1)


def parse_size(text: str) -> int:
    """Bytes in '500MB', '2GiB', '1.5 GB', '1000' (KB, MB, GB, TB count in 1000s; KiB, MiB, GiB, TiB in
    1024s). Raises ValueError."""
    value = text.strip().lower().replace(" ", "")
    digits = len(value) - len(value.lstrip("0123456789."))
    number, unit = value[:digits], value[digits:]
    if unit not in _SIZE_UNITS or not number:
        raise ValueError(f"not a size: {text!r} (want e.g. 500MB, 2GB, 1GiB)")
    try:
        return int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise ValueError(f"not a size: {text!r} (want e.g. 500MB, 2GB, 1GiB)") from None


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse reports a ValueError's message only for its own types: this makes ours say why."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="URL",
                        help="the cache database (default: $LLM_CACHE_DB, else llm_cache_db in the repo's config.yaml)")
    common.add_argument("--json", action="store_true", help="JSON for pipes (JSON Lines for lists)")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--model", help="only entries of this model")
    filters.add_argument("--host", help="only entries of this host")
    filters.add_argument("--family", help="only entries of this endpoint family (openai.chat, anthropic.messages…)")
    filters.add_argument("--tag", help="only entries recorded with this X-LLM-Cache-Tags tag")
    filters.add_argument("--older-than", type=_argument(parse_duration), metavar="AGE",
                         help="only entries recorded longer ago than AGE (30d, 12h…)")
    filters.add_argument("--newer-than", type=_argument(parse_duration), metavar="AGE",
                         help="only entries recorded within AGE")
    filters.add_argument("--text", help="only entries whose request mentions TEXT (in any string, ignoring case)")
    filters.add_argument("--namespace", help="only entries recorded with X-LLM-Cache-Namespace: NAME ('' for none)")

    top = argparse.ArgumentParser(prog="llm-cache", description="The llm-cache database from a shell.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stats = commands.add_parser("stats", parents=[common], help="entries, hits, tokens and money saved")
    stats.add_argument("--since", type=_argument(parse_duration), metavar="AGE",
                       help="only entries recorded or hit within AGE (7d…); hit counts are totals")
    ls = commands.add_parser("ls", parents=[common, filters], help="list entries, newest first")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0: all)")
    show = commands.add_parser("show", parents=[common], help="one entry: its request and answer, readable")
    show.add_argument("key", help="a key or its first characters")
    export = commands.add_parser("export", parents=[common, filters], help="write entries to a cassette")
    export.add_argument("path", help="the cassette (JSON Lines) to write; - for stdout")
    load = commands.add_parser("import", parents=[common], help="load a cassette (replaces entries of its keys)")
    load.add_argument("path", help="the cassette to read; - for stdin")
    prune = commands.add_parser("prune", parents=[common], help="delete expired, old or least recently used entries")
    prune.add_argument("--expired", action="store_true", help="entries past their X-LLM-Cache-TTL")
    prune.add_argument("--older-than", type=_argument(parse_duration), metavar="AGE",
                       help="entries recorded before AGE")
    prune.add_argument("--max-size", type=_argument(parse_size), metavar="SIZE",
                       help="least recently used entries (last hit, else recorded) until the rest take at most SIZE")
    prune.add_argument("--vacuum", action="store_true", help="then give the space back (SQLite: VACUUM)")
    clear = commands.add_parser("clear", parents=[common], help="delete every entry")
    clear.add_argument("--yes", action="store_true", help="do not ask")
    invalidate = commands.add_parser("invalidate", parents=[common], help="delete entries by tag, model or host")
    invalidate.add_argument("--tag")
    invalidate.add_argument("--model")
    invalidate.add_argument("--host")
    reject = commands.add_parser("reject", parents=[common], help="report an entry as a bad answer: it is deleted, "
                                 "and its request is recorded anew")
    reject.add_argument("key", help="a key, or its first characters")
    explain = commands.add_parser("explain", parents=[common],
                                  help="the near miss of an entry, and the rule that would have made it a hit")
    explain.add_argument("key", help="a key or its first characters")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        url = database_url(args.db)
        if args.command != "import":
            _must_exist(url)
        cache_models.open_database(url)
        return int(COMMANDS[args.command](args, url) or 0)
    except BrokenPipeError:  # `llm-cache ls | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
    except (Failure, ValueError, OSError, DatabaseError) as e:  # peewee wraps the drivers' errors in its own
        print(f"llm-cache: {e}", file=sys.stderr)
        return 1


def database_url(given: str | None, environ: dict[str, str] | None = None, root: Path = ROOT) -> str:
    """--db, else $LLM_CACHE_DB (a relative SQLite path is where the command runs), else what
    scripts/run uses: llm_cache_db in the repo's config.yaml, relative to the repo."""
    environ = dict(os.environ) if environ is None else environ
    if given or environ.get("LLM_CACHE_DB"):
        return cache_models.resolve_db_url(given or environ["LLM_CACHE_DB"], os.getcwd())
    return cache_models.resolve_db_url(config(root).get("llm_cache_db", options.DEFAULT_DB), str(root))


def config(root: Path = ROOT) -> dict[str, Any]:
    """The repo's config.yaml (the one scripts/run loads), or {} without one."""
    try:
        text = (root / "config.yaml").read_text()
    except FileNotFoundError:
        return {}
    from ruamel.yaml import YAML  # mitmproxy's own YAML reader

    document = YAML(typ="safe", pure=True).load(text)
    return document if isinstance(document, dict) else {}


def key_rules(root: Path = ROOT) -> KeyRules:
    """The key rules the proxy started by scripts/run uses (config.yaml's llm_cache_* options)."""
    values = config(root)
    defaults = {option.full_name: option.default for option in options.SETTINGS}
    return options.settings_from_values(lambda name: values.get(name, defaults[name])).key_rules


def _must_exist(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        if not os.path.exists(path):
            raise Failure(f"there is no cache at {path} (--db URL, or LLM_CACHE_DB, names another)")


def _filter(args: argparse.Namespace, now: float) -> inventory.EntryFilter:
    return inventory.EntryFilter(
        model=args.model, host=args.host, family=args.family, tag=args.tag,
        created_before=None if args.older_than is None else now - args.older_than,
        created_after=None if args.newer_than is None else now - args.newer_than,
        text=args.text, namespace=args.namespace)


# -- output ---------------------------------------------------------------------------------------


def _emit(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, default=_plain).decode() + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON")


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _money(value: Decimal | None) -> str:
    if value is None:
        return "unknown price"
    return f"${value:,.2f}" if value >= 1 else f"${value:.6f}".rstrip("0").rstrip(".") if value else "$0"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [list(map(str, head))] + [[f"{c:,}" if isinstance(c, int) and not isinstance(c, bool) else str(c)
                                       for c in row] for row in rows]
    numeric = [all(row[i].replace(",", "").isdigit() for row in cells[1:]) and len(cells) > 1
               for i in range(len(head))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) if numeric[i] else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                     for row in cells)


class Progress:
    """`label done/total` on one line of stderr, only when stderr is a terminal (never in a pipe or a log)."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None) -> None:
        self.label, self.total = label, total
        self.stream = sys.stderr if stream is None else stream
        self.shown = False
        self.last = 0.0
        self.on = self.stream.isatty()

    def __call__(self, done: int) -> None:
        if self.on and time.monotonic() - self.last >= 0.2:
            self.last = time.monotonic()
            of = f"/{self.total:,}" if self.total is not None else ""
            self.stream.write(f"\r{self.label} {done:,}{of}")
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()


# -- stats ----------------------------------------------------------------------------------------


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
        _emit({"database": cache_models.redact_url(url), "since": since, "prices": prices.source,
               "counted": rate, **whole.document(),
               "models": [{"model": name, **saved.document()} for name, saved in sorted(models.items())],
               "hosts": [{"host": name, **saved.document()} for name, saved in sorted(hosts.items())]})
        return
    window = f" recorded or hit since {_when(since)} (hit counts are totals)" if since is not None else ""
    print(f"database  {cache_models.redact_url(url)}")
    print(f"entries   {whole.entries:,}{window}, {human_size(whole.bytes)}, {whole.hits:,} hits")
    unpriced = (f" (+ {whole.unpriced_hits:,} hits of unknown price)" if whole.unpriced_hits and whole.priced_hits
                else "")
    print(f"saved     {whole.input_tokens:,} input and {whole.output_tokens:,} output tokens, "
          f"{_money(whole.money_saved)}{unpriced} (prices: {prices.source})")
    if rate["hit_rate"] is not None:
        print(f"hit rate  {rate['hit_rate']:.1%}: {rate['hits']:,} hits, {rate['misses']:,} misses went upstream"
              + (f" (counted since {_when(since)})" if since is not None else " (since the proxy counts them)"))
    for label, groups in (("model", models), ("host", hosts)):
        if groups:
            print()
            print(table([label, "entries", "size", "hits", "input saved", "output saved", "money saved"],
                        [[name, s.entries, human_size(s.bytes), s.hits, s.input_tokens, s.output_tokens,
                          _money(s.money_saved) + (" +unknown" if s.unpriced_hits and s.priced_hits else "")]
                         for name, s in sorted(groups.items())]))


# -- ls, show, explain ----------------------------------------------------------------------------


def ls(args: argparse.Namespace, url: str) -> None:
    rows = inventory.listed_entries(_filter(args, time.time()), limit=args.limit or None)
    if args.json:
        for row in rows:
            _emit(_listed(row))
        return
    if not rows:
        print("no entries", file=sys.stderr)
        return
    print(table(["key", "recorded", "family", "model", "host", "hits", "kind", "size", "tags"],
                [[row["key"][:12], _when(row["created_at"]), row["family"], row["model"], row["host"],
                  row["hit_count"], "stream" if row["is_stream"] else "json", human_size(row["size"]),
                  ",".join(cassettes.tags_of(row["tags"]))] for row in rows]))



def _listed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "is_stream": bool(row["is_stream"]), "tags": cassettes.tags_of(row["tags"])}


def show(args: argparse.Namespace, url: str) -> None:
    row = _entry(args.key)
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
        _emit({**meta, "is_stream": bool(row["is_stream"]), "tags": cassettes.tags_of(row["tags"]), "request": request,
               "answer": answer})
        return
    print(f"entry     {row['key']}")
    print(f"request   POST {request.get('url', '')}  ({row['family']}, {row['model']})")
    print(f"recorded  {_when(row['created_at'])}, {row['hit_count']:,} hits (last {_when(row['last_hit_at'])})"
          + (f", expires {_when(row['expires_at'])}" if row["expires_at"] else "")
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


def _entry(key: str) -> dict[str, Any]:
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
            _emit(None)
        else:
            print(f"{args.key}: no earlier entry of the same endpoint and model differs from it by a few paths")
        return 0
    miss, rule = found
    if args.json:
        _emit({"key": miss.key, "neighbour": miss.neighbour, "differing": miss.differing,
               "differences": [d._asdict() for d in miss.differences], "profile": miss.profile,
               "user_agent": miss.user_agent, "rule": rule})
    else:
        print(miss.describe())
        print()
        print(rule)
    return 0


# -- deleting -------------------------------------------------------------------------------------


def prune(args: argparse.Namespace, url: str) -> int:
    if not (args.expired or args.older_than is not None or args.max_size is not None or args.vacuum):
        raise Failure("prune needs --expired, --older-than AGE, --max-size SIZE and/or --vacuum")
    now = time.time()
    size_before = inventory.totals()[1]
    deleted: dict[str, int] = {}
    if args.expired:
        deleted["expired"] = _delete(inventory.expired_keys(now), "deleting expired entries")
    if args.older_than is not None:
        old = inventory.matching_keys(inventory.EntryFilter(created_before=now - args.older_than))
        deleted["older_than"] = _delete(old, "deleting old entries")
    if args.max_size is not None:
        deleted["over_max_size"] = _delete(inventory.least_recently_used(args.max_size),
                                           "deleting least recently used entries")
    if args.vacuum:
        inventory.vacuum()
    entries, size = inventory.totals()
    if args.json:
        _emit({"deleted": sum(deleted.values()), **deleted, "entries": entries, "bytes_before": size_before,
               "bytes": size, "vacuumed": args.vacuum})
    else:
        why = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in deleted.items())
        print(f"deleted {sum(deleted.values()):,} entries" + (f" ({why})" if why else "")
              + f"; {entries:,} left, {human_size(size)}" + (", vacuumed" if args.vacuum else ""))
    return 0


def _delete(keys: list[str], label: str) -> int:
    progress = Progress(label, len(keys))
    try:
        return inventory.delete_keys(keys, progress)
    finally:
        progress.close()


def clear(args: argparse.Namespace, url: str) -> int:
    entries, size = inventory.totals()
    if not args.yes:
        print(f"delete all {entries:,} entries ({human_size(size)}) from {cache_models.redact_url(url)}? [y/N] ",
              end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            raise Failure("nothing deleted")
    deleted = inventory.delete_every_entry()
    if args.json:
        _emit({"deleted": deleted})
    else:
        print(f"deleted {deleted:,} entries")
    return 0


def invalidate(args: argparse.Namespace, url: str) -> int:
    if args.tag is None and args.model is None and args.host is None:
        raise Failure("invalidate needs --tag, --model and/or --host")
    keys = inventory.matching_keys(inventory.EntryFilter(tag=args.tag, model=args.model, host=args.host))
    deleted = _delete(keys, "deleting entries")
    if args.json:
        _emit({"deleted": deleted})
    else:
        print(f"deleted {deleted:,} entries")
    return 0


def reject(args: argparse.Namespace, url: str) -> int:
    key = _entry(args.key)["key"]
    deleted = _delete([key], "deleting the entry")
    if args.json:
        _emit({"rejected": key, "deleted": deleted})
    else:
        print(f"rejected {key}: its request goes upstream next time and is recorded anew")
    return 0


def export(args: argparse.Namespace, url: str) -> int:
    spec = _filter(args, time.time())
    progress = Progress("exported")
    try:
        if args.path == "-":
            count = cassettes.write_cassette(inventory.full_entries(spec), sys.stdout.buffer, progress)
            sys.stdout.buffer.flush()
        else:
            partial = Path(args.path + ".partial")  # a cassette is whole or not there: never half-written
            with open(partial, "wb") as out:
                count = cassettes.write_cassette(inventory.full_entries(spec), out, progress)
            partial.replace(args.path)
    finally:
        progress.close()
    if args.path == "-":  # stdout is the cassette
        print(f"exported {count:,} entries", file=sys.stderr)
    elif args.json:
        _emit({"exported": count, "path": args.path})
    else:
        print(f"exported {count:,} entries to {args.path}")
    return 0


def import_(args: argparse.Namespace, url: str) -> int:
    progress = Progress("imported")
    try:
        if args.path == "-":
            count = inventory.upsert_entries(cassettes.read_cassette(sys.stdin.buffer, "stdin"), progress)
        else:
            with open(args.path, "rb") as lines:
                count = inventory.upsert_entries(cassettes.read_cassette(lines, args.path), progress)
    finally:
        progress.close()
    if args.json:
        _emit({"imported": count, "database": cache_models.redact_url(url)})
    else:
        print(f"imported {count:,} entries into {cache_models.redact_url(url)}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, str], int | None]] = {
    "stats": stats, "ls": ls, "show": show, "export": export, "import": import_, "prune": prune,
    "clear": clear, "invalidate": invalidate, "reject": reject, "explain": explain,
}
