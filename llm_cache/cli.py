"""scripts/llm-cache: the cache database from a shell. Statistics with the money hits saved, listing
and showing entries, cassettes (export / import), pruning, clearing, invalidating, explaining near
misses; and how well the semantic tier would do on labelled pairs (semantic-eval).

It reads and writes the database itself (cache_models' plain functions), never through a CacheStore:
no writer process, so it runs beside a proxy using the same cache. Output is text for people, or
`--json` (one document; JSON Lines for lists) for pipes.

This module is the parser and the dispatch; the commands are in cli_inspect (stats, ls, show,
explain) and cli_manage (prune, clear, invalidate, reject, export, import), on cli_args (argument
types), cli_config (which database, which key rules) and cli_output (what is printed).
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from peewee import DatabaseError

import cache_models
from llm_cache import cli_inspect, cli_manage, embedders, semantic_eval
from llm_cache.cli_args import argument_type, parse_duration, parse_size
from llm_cache.cli_config import database_url
from llm_cache.cli_output import Failure


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
    filters.add_argument("--older-than", type=argument_type(parse_duration), metavar="AGE",
                         help="only entries recorded longer ago than AGE (30d, 12h…)")
    filters.add_argument("--newer-than", type=argument_type(parse_duration), metavar="AGE",
                         help="only entries recorded within AGE")
    filters.add_argument("--text", help="only entries whose request mentions TEXT (in any string, ignoring case)")
    filters.add_argument("--namespace", help="only entries recorded with X-LLM-Cache-Namespace: NAME ('' for none)")

    top = argparse.ArgumentParser(prog="llm-cache", description="The llm-cache database from a shell.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stats = commands.add_parser("stats", parents=[common], help="entries, hits, tokens and money saved")
    stats.add_argument("--since", type=argument_type(parse_duration), metavar="AGE",
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
    prune.add_argument("--older-than", type=argument_type(parse_duration), metavar="AGE",
                       help="entries recorded before AGE")
    prune.add_argument("--max-size", type=argument_type(parse_size), metavar="SIZE",
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
    evaluate = commands.add_parser("semantic-eval", help="precision and recall of the semantic tier on labelled "
                                   "pairs, per threshold and guard (no database needed)")
    evaluate.add_argument("--pairs", default=str(semantic_eval.PAIRS),
                          help="JSON Lines of {\"a\", \"b\", \"same\"} (default: the set the tests ship)")
    evaluate.add_argument("--embedder", default=embedders.LOCAL, type=argument_type(embedders.parse),
                          help="local, or an embeddings endpoint URL (called through $HTTPS_PROXY if set)")
    evaluate.add_argument("--model", default="text-embedding-3-small", help="the endpoint's embedding model")
    evaluate.add_argument("--json", action="store_true", help="JSON for pipes")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "semantic-eval":
            return semantic_eval.run(args)
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


def _must_exist(url: str) -> None:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].split("?", 1)[0]
        if not os.path.exists(path):
            raise Failure(f"there is no cache at {path} (--db URL, or LLM_CACHE_DB, names another)")


COMMANDS: dict[str, Callable[[argparse.Namespace, str], int | None]] = {
    "stats": cli_inspect.stats, "ls": cli_inspect.ls, "show": cli_inspect.show, "export": cli_manage.export,
    "import": cli_manage.import_, "prune": cli_manage.prune, "clear": cli_manage.clear,
    "invalidate": cli_manage.invalidate, "reject": cli_manage.reject, "explain": cli_inspect.explain,
}
