"""The command line's own argument types (scripts/llm-cache): durations, sizes, and the entry filter
the listing and exporting commands share. Each parser is a small pure function that raises ValueError."""

import argparse
from collections.abc import Callable
from typing import Any

from llm_cache import inventory

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


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


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse reports a ValueError's message only for its own types: this makes ours say why."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def entry_filter(args: argparse.Namespace, now: float) -> inventory.EntryFilter:
    """The entries the filter options (--model, --host, --family, --tag, --older-than…) name."""
    return inventory.EntryFilter(
        model=args.model, host=args.host, family=args.family, tag=args.tag,
        created_before=None if args.older_than is None else now - args.older_than,
        created_after=None if args.newer_than is None else now - args.newer_than,
        text=args.text, namespace=args.namespace)
