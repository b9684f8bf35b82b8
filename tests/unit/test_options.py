"""One source for the options: llm_cache.options. config.yaml's comments and the README's table
must name every option with the default mitmproxy gets, and the defaults must parse into
policy.Settings' own defaults."""

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from llm_cache import options, policy

ROOT = Path(__file__).resolve().parents[2]


def config_yaml_defaults() -> dict[str, object]:
    """`llm_cache_*` values in config.yaml, set or shown in a comment (`# llm_cache_x: value   # why`)."""
    found = {}
    for line in (ROOT / "config.yaml").read_text().splitlines():
        match = re.match(r"#?\s*(llm_cache_\w+):(.*)$", line)
        if match:
            value = match[2].split(" # ")[0].strip()
            found[match[1]] = YAML(typ="safe", pure=True).load(value) if value not in ("|", "") else ""
    return found


def readme_defaults() -> dict[str, str]:
    """`| `llm_cache_a`, `llm_cache_b` | `default` | …` rows of the README's Options table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Options"):text.index("## Headers")]
    found = {}
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`llm_cache_"):
            for name in re.findall(r"`(llm_cache_\w+)`", cells[0]):
                found[name] = cells[1].strip("`")
    return found


def test_config_yaml_shows_every_option_with_its_default():
    shown = config_yaml_defaults()
    assert sorted(shown) == sorted(option.full_name for option in options.OPTIONS)
    for option in options.OPTIONS:
        assert shown[option.full_name] == option.default, option.full_name


def test_the_readme_table_lists_every_option_with_its_default():
    listed = readme_defaults()
    assert sorted(listed) == sorted(option.full_name for option in options.OPTIONS)
    for option in options.OPTIONS:
        default = option.default
        if isinstance(default, bool):
            expected = str(default).lower()
        else:
            expected = {"": '""', "[]": "[]"}.get(str(default), str(default))
        assert listed[option.full_name] == expected, option.full_name


def test_the_defaults_parse_into_the_settings_defaults():
    parsed, default = options.settings_from_values(lambda name: options.DEFAULTS[name.removeprefix("llm_cache_")]), \
        policy.Settings()
    for field in ("mode", "ttl", "stale_if_error", "hosts", "models", "families", "max_request_bytes",
                  "max_response_bytes", "temperature", "scan_secrets", "samples", "scope", "compat_headers",
                  "refuse_websocket", "refresh_date", "max_size", "upstream_keys", "write_retry", "lookup_timeout_ms",
                  "single_flight_wait"):
        assert getattr(parsed, field) == getattr(default, field), field
    assert parsed.key_rules.portable == default.key_rules.portable
    assert parsed.key_rules.ignored == default.key_rules.ignored


@pytest.mark.parametrize("option", options.OPTIONS, ids=lambda option: option.name)
def test_every_option_says_what_it_does(option):
    assert option.help.endswith(".") and len(option.help) > 20
