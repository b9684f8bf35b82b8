"""Which cache and which key rules the command line uses: what scripts/run uses, read from the repo's
config.yaml, unless --db or $LLM_CACHE_DB names another database."""

import os
from pathlib import Path
from typing import Any

import cache_models
from llm_cache import options
from llm_cache.normalise import KeyRules

ROOT = Path(__file__).resolve().parents[1]


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
