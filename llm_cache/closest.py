"""Explaining a replay miss: which stored request came closest, and the JSON paths where it differs.
This is what a user needs to fix a flaky replay (a timestamp in a prompt, a changed tool list)."""

from collections.abc import Iterable
from typing import Any, NamedTuple

MAX_PATHS = 8  # named in the error; the count says how many more


class Nearest(NamedTuple):
    key: str
    created_at: float
    paths: list[str]  # where the request differs from this entry, at most MAX_PATHS
    differences: int  # how many paths differ in all


def differing_paths(a: Any, b: Any, path: str = "") -> list[str]:
    """JSON paths (`messages[2].content`, `temperature`) at which two parsed documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for name in sorted(a.keys() | b.keys()):
            child = f"{path}.{name}" if path else name
            if name not in a or name not in b:
                out.append(child)
            else:
                out += differing_paths(a[name], b[name], child)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                out.append(f"{path}[{i}]")
            else:
                out += differing_paths(a[i], b[i], f"{path}[{i}]")
        return out
    if a == b and type(a) is type(b):
        return []
    return [path or "(the whole body)"]


def nearest(body: Any, candidates: Iterable[tuple[str, float, Any]]) -> Nearest | None:
    """The candidate (key, created_at, canonical body) that differs from `body` at the fewest paths;
    the newest wins a tie."""
    best: Nearest | None = None
    for key, created_at, other in candidates:
        paths = differing_paths(other, body)
        better = best is None or (len(paths), -created_at) < (best.differences, -best.created_at)
        if better:
            best = Nearest(key, created_at, paths[:MAX_PATHS], len(paths))
    return best


def describe(nearest_entry: Nearest | None) -> str:
    if nearest_entry is None:
        return "No request to this endpoint is stored yet."
    paths = ", ".join(nearest_entry.paths)
    more = nearest_entry.differences - len(nearest_entry.paths)
    if more > 0:
        paths += f" and {more} more"
    if not nearest_entry.differences:
        return (f"The closest stored request, entry {nearest_entry.key[:12]}, has the same body; it differs in "
                "the URL, the keyed headers or the partition (namespace or credential).")
    return f"The closest stored request, entry {nearest_entry.key[:12]}, differs at: {paths}."
