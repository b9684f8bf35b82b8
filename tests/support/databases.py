"""The databases the storage tests run on: a SQLite file, and the PostgreSQL that .ci/run starts."""

import os
from pathlib import Path

import pytest

import cache_models


def fresh_database(kind: str, folder: Path, name: str = "cache.sqlite3") -> str:
    """The URL of an empty cache database of this kind ("sqlite" or "postgresql"). Without a
    PostgreSQL (LLM_CACHE_TEST_POSTGRES) its tests skip, except in CI, where they fail."""
    if kind == "sqlite":
        return f"sqlite:///{folder}/{name}"
    url = os.environ.get("LLM_CACHE_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL: .ci/run exports LLM_CACHE_TEST_POSTGRES")
        pytest.skip("no PostgreSQL here: .ci/postgres.sh starts one and sets LLM_CACHE_TEST_POSTGRES")
    cache_models.open_database(url).drop_tables(
        [cache_models.CacheEntry, cache_models.CacheSetting, cache_models.CacheCount, cache_models.CacheDep,
         cache_models.CacheVector])
    return url
