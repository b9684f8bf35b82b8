"""The command line's commands that change the cache or carry it elsewhere (scripts/llm-cache prune,
clear, invalidate, reject; export and import of cassettes, whose format llm_cache.cassettes describes):
what was done, as text for people or with --json one document for pipes."""

import argparse
import sys
import time
from pathlib import Path

import cache_models
from llm_cache import cassettes, inventory
from llm_cache.cli_args import entry_filter
from llm_cache.cli_inspect import stored_entry
from llm_cache.cli_output import Failure, Progress, emit, human_size

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
        emit({"deleted": sum(deleted.values()), **deleted, "entries": entries, "bytes_before": size_before,
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
    _say_deleted(args, deleted)
    return 0


def _say_deleted(args: argparse.Namespace, deleted: int) -> None:
    if args.json:
        emit({"deleted": deleted})
    else:
        print(f"deleted {deleted:,} entries")


def invalidate(args: argparse.Namespace, url: str) -> int:
    if args.tag is None and args.model is None and args.host is None:
        raise Failure("invalidate needs --tag, --model and/or --host")
    keys = inventory.matching_keys(inventory.EntryFilter(tag=args.tag, model=args.model, host=args.host))
    deleted = _delete(keys, "deleting entries")
    _say_deleted(args, deleted)
    return 0


def reject(args: argparse.Namespace, url: str) -> int:
    key = stored_entry(args.key)["key"]
    deleted = _delete([key], "deleting the entry")
    if args.json:
        emit({"rejected": key, "deleted": deleted})
    else:
        print(f"rejected {key}: its request goes upstream next time and is recorded anew")
    return 0


# -- cassettes ------------------------------------------------------------------------------------


def export(args: argparse.Namespace, url: str) -> int:
    spec = entry_filter(args, time.time())
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
        emit({"exported": count, "path": args.path})
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
        emit({"imported": count, "database": cache_models.redact_url(url)})
    else:
        print(f"imported {count:,} entries into {cache_models.redact_url(url)}")
    return 0
