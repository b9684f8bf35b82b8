"""What the proxy and its writer process say to each other (llm_cache.writer carries them): the ops a
batch holds besides entries, the notes a batch comes back with, and the causes of a failed write that
may pass. Plain data: no database here."""

import os
import time
from typing import NamedTuple

from llm_cache.normalise import KeyRules


class HitCounts(dict[str, tuple[int, float]]):
    """A writer op: hits per key since the last one, with the time of the latest."""


class MissCounts(dict[tuple[str, str, str, str], int]):
    """A writer op: LLM calls that went upstream, per (day, family, host, model)."""


class DepVersions(dict[str, str]):
    """A writer op: dependencies' new current versions."""


class Rejected(NamedTuple):
    """A writer op: entries reported as bad answers, to delete."""

    keys: tuple[str, ...]


class SemanticReports(NamedTuple):
    """A writer op: entries reported as wrong semantic answers, one report each."""

    keys: tuple[str, ...]


class Rules(NamedTuple):
    """A writer op: the key rules near misses are explained with from now on."""

    rules: KeyRules


class Upkeep(NamedTuple):
    """A writer op: how the writer keeps the cache bounded from now on, every UPKEEP_EVERY seconds."""

    max_size: int = 0  # bytes of bodies and requests; past it the least recently used entries go (0: no bound)
    ttl: int = 0  # llm_cache_ttl: entries older are deleted (0: never)
    delete_expired: bool = True  # False with stale-if-error, which serves expired entries when the upstream fails


class Removed(NamedTuple):
    """A writer note: entries the upkeep deleted."""

    expired: int
    evicted: int
    evicted_bytes: int


class Skipped(NamedTuple):
    """A writer note: this entry of a written batch was not stored, and why."""

    key: str
    reason: str


class NotComplete(NamedTuple):
    """A writer note: this stream is not a complete success (it ended early, or carries an error
    event): not stored, as a JSON answer that is not one is not."""

    key: str
    reason: str


def utc_day(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def transient_cause(error: Exception, *, remote: bool = False) -> str | None:
    """What a failure that may pass is, in words, or None when it will not pass by waiting.
    `remote`: the database is a server (an operational or interface error is then a lost connection;
    psycopg2 raises them, and peewee raises its own of the same names)."""
    text = str(error).lower()
    for needle, cause in _TRANSIENT:
        if needle in text:
            return cause
    if remote and type(error).__name__ in ("OperationalError", "InterfaceError"):
        return f"the database server cannot be reached ({first_line(error)})"
    return None


_TRANSIENT = (
    ("database is locked", "the database is locked by another process"),
    ("database table is locked", "the database is locked by another process"),
    ("database or disk is full", "the disk is full"),
    ("no space left", "the disk is full"),
    ("readonly database", "the database is read-only"),
    ("read-only file system", "the file system is read-only"),
    ("disk i/o error", "a disk I/O error"),
    ("unable to open database file", "the database file cannot be opened"),
    ("no such table", "the database file was replaced"),
)


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


UPKEEP_EVERY = 30.0  # seconds between the writer's checks of expiry and size


EVICT_TO = 0.9  # an eviction goes this far below llm_cache_max_size, so the next writes do not evict again


def sqlite_inode(url: str) -> int | None:
    """The SQLite file's inode (None for PostgreSQL, or when the file is gone)."""
    if not url.startswith("sqlite:///"):
        return None
    try:
        return os.stat(url[len("sqlite:///"):].split("?", 1)[0]).st_ino
    except OSError:
        return -1
