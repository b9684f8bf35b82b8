"""Agent profiles: what one agent puts in its requests that changes on every run or every machine,
and where, declared as data (llm_cache/profiles.yaml holds the built-in ones; a user adds or
overrides profiles in the same shape with `llm_cache_profiles`).

    claude-code:
      description: Claude Code (claude -p, the TUI, the Agent SDK)
      match: {user_agent: ["claude-cli/*"], family: [anthropic.messages]}
      ignore: [metadata]                          # body paths left out of the key
      volatile:                                   # text that differs on every run
        - {at: "system[0].text", pattern: '(?<=cch=)[0-9a-f]+', replace: "<cch>"}
      unordered:                                  # a list, or adjacent text blocks, in an order that varies
        - {at: "tools[*].enum"}
        - {at: "system[*].text", pattern: '(?s)<skill>.*?</skill>\\n'}
      portable:                                   # dates and the like (llm_cache_portable)
        - {at: "messages[*].content[*].text", pattern: "Today's date is [0-9-]+", replace: "Today's date is <date>"}
      values:                                     # values the request states, replaced wherever they appear
        - {at: "system[*].text", pattern: 'Primary working directory: (\\S+)', name: cwd}

A request is recognised by its headers and endpoint (`match`), and a profile's rules apply only to
that agent's requests and only where they say. `values` are found where `at` says (group 1 of the
pattern) and then replaced in every string of the body: the working directory also turns up in
tool results and file paths. They count as portable rules.
"""

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from llm_cache import paths

BUILT_IN = Path(__file__).with_name("profiles.yaml")
MIN_VALUE_LENGTH = 4  # a captured value shorter than this ("/", "~") would be replaced far too widely


@dataclass(frozen=True)
class TextRule:
    at: paths.Path
    pattern: re.Pattern[str]
    replace: str = "<norm>"

    def apply(self, body: Any) -> None:
        paths.map_strings(body, self.at, lambda text: self.pattern.sub(self.replace, text))


@dataclass(frozen=True)
class OrderRule:
    """A list, or runs of adjacent text blocks, that the agent sends in an order that varies from
    run to run (the Gemini CLI reads its skills concurrently): sorted before keying."""

    at: paths.Path
    pattern: re.Pattern[str] | None = None  # None: the list at `at`; else blocks of this pattern in text

    def apply(self, body: Any) -> None:
        if self.pattern is None:
            for container, slot in list(paths.places(body, self.at)):
                if isinstance(container[slot], list):
                    container[slot] = sorted(container[slot], key=lambda v: json.dumps(v, sort_keys=True, default=str))
        else:
            paths.map_strings(body, self.at, self._sort_runs)

    def _sort_runs(self, text: str) -> str:
        assert self.pattern is not None
        out: list[str] = []
        run: list[str] = []  # the adjacent blocks found so far
        at = 0
        for match in self.pattern.finditer(text):
            if run and match.start() != at:
                out.append("".join(sorted(run)))
                run = []
            if not run:
                out.append(text[at:match.start()])
            run.append(match.group(0))
            at = match.end()
        out.append("".join(sorted(run)))
        out.append(text[at:])
        return "".join(out)


@dataclass(frozen=True)
class ValueRule:
    at: paths.Path
    pattern: re.Pattern[str]  # group 1 is the value
    name: str

    def found(self, body: Any) -> Iterable[str]:
        for text in paths.strings(body, self.at):
            for match in self.pattern.finditer(text):
                value = match.group(1)
                if value and len(value) >= MIN_VALUE_LENGTH:
                    yield value


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    user_agents: tuple[str, ...] = ()  # globs, lower-case; any of them
    headers: tuple[tuple[str, str], ...] = ()  # (name, glob), lower-case; all of them
    families: tuple[str, ...] = ()  # any of them; empty: every family
    ignore: tuple[paths.Path, ...] = ()
    volatile: tuple[TextRule, ...] = ()
    unordered: tuple[OrderRule, ...] = ()
    portable: tuple[TextRule, ...] = ()
    values: tuple[ValueRule, ...] = ()

    def matches(self, family: str, headers: Mapping[str, str]) -> bool:
        if self.families and family not in self.families:
            return False
        if self.user_agents:
            agent = headers.get("user-agent", "").lower()
            if not any(fnmatchcase(agent, glob) for glob in self.user_agents):
                return False
        return all(fnmatchcase(headers.get(name, "").lower(), glob) for name, glob in self.headers)

    def apply(self, body: dict[str, Any], *, portable: bool) -> dict[str, Any]:
        """The body with this profile's rules applied (changed in place where it can be)."""
        for path in self.ignore:
            paths.remove(body, path)
        for rule in self.volatile:
            rule.apply(body)
        for order in self.unordered:
            order.apply(body)
        if not portable:
            return body
        found = {value: f"<{rule.name}>" for rule in self.values for value in rule.found(body)}
        for rule in self.portable:
            rule.apply(body)
        if not found:
            return body
        # Longest first: a working directory inside HOME is named as the working directory.
        anywhere = re.compile("|".join(re.escape(v) for v in sorted(found, key=len, reverse=True)))
        return paths.map_all(body, lambda text: anywhere.sub(lambda m: found[m.group(0)], text))


@dataclass(frozen=True)
class Profiles:
    """Profiles in the order they are tried: the user's, then the built-in ones."""

    all: tuple[Profile, ...] = ()
    _by_name: dict[str, Profile] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update((p.name, p) for p in self.all)

    def get(self, name: str) -> Profile | None:
        return self._by_name.get(name) if name else None

    def recognise(self, family: str, headers: Mapping[str, str]) -> str:
        """The name of the profile of the agent that sent a request, or ""."""
        for profile in self.all:
            if profile.matches(family, headers):
                return profile.name
        return ""

    def names(self) -> list[str]:
        return [p.name for p in self.all]


NO_PROFILES = Profiles()


# -- reading profiles ---------------------------------------------------------------------------

_KEYS = frozenset({"description", "extends", "match", "ignore", "volatile", "unordered", "portable", "values"})


def load(user: str = "", *, built_in: str | None = None) -> Profiles:
    """The built-in profiles with the user's on top (YAML text, or the path of a YAML file).
    A user profile of a built-in's name replaces it; `extends: NAME` starts from another profile.
    Raises ValueError with a message fit for the user."""
    base = parse(built_in if built_in is not None else BUILT_IN.read_text(), source="the built-in profiles")
    if not user.strip():
        return Profiles(tuple(base.values()))
    text = user
    if "\n" not in user and user.strip().endswith((".yaml", ".yml")):
        try:
            text = Path(user.strip()).expanduser().read_text()
        except OSError as e:
            raise ValueError(f"llm_cache_profiles: cannot read {user.strip()!r}: {e.strerror}") from None
    own = parse(text, source="llm_cache_profiles", known=base)
    rest = [profile for name, profile in base.items() if name not in own]
    return Profiles(tuple(own.values()) + tuple(rest))


def parse(text: str, *, source: str, known: Mapping[str, Profile] | None = None) -> dict[str, Profile]:
    document = _yaml(text, source)
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ValueError(f"{source}: want a mapping of profile names to profiles")
    parsed: dict[str, Profile] = {}
    for name, spec in document.items():
        where = f"{source}: profile {name!r}"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where}: want a mapping with {', '.join(sorted(_KEYS))}")
        unknown = set(spec) - _KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                             f"(known: {', '.join(sorted(_KEYS))})")
        start = Profile(str(name))
        if "extends" in spec:
            parent = parsed.get(spec["extends"]) or (known or {}).get(spec["extends"])
            if parent is None:
                raise ValueError(f"{where}: extends {spec['extends']!r}, which is not a profile")
            start = replace(parent, name=str(name))
        parsed[str(name)] = _profile(start, spec, where)
    return parsed


def _yaml(text: str, source: str) -> Any:
    from ruamel.yaml import YAML  # mitmproxy's own YAML reader; imported only when profiles are read
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as e:
        raise ValueError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def _profile(start: Profile, spec: Mapping[str, Any], where: str) -> Profile:
    match = spec.get("match")
    if match is not None and not isinstance(match, Mapping):
        raise ValueError(f"{where}: match wants user_agent, headers and/or family")
    fields: dict[str, Any] = {}
    if match is not None:
        fields["user_agents"] = tuple(g.lower() for g in _strings(match.get("user_agent"), f"{where}: user_agent"))
        headers = match.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise ValueError(f"{where}: match.headers wants a mapping of header names to globs")
        fields["headers"] = tuple((str(k).lower(), str(v).lower()) for k, v in headers.items())
        fields["families"] = tuple(_strings(match.get("family"), f"{where}: family"))
    if "description" in spec:
        fields["description"] = str(spec["description"])
    fields["ignore"] = start.ignore + tuple(_path(p, where) for p in _strings(spec.get("ignore"), f"{where}: ignore"))
    fields["volatile"] = start.volatile + _text_rules(spec.get("volatile"), f"{where}: volatile")
    fields["unordered"] = start.unordered + _order_rules(spec.get("unordered"), f"{where}: unordered")
    fields["portable"] = start.portable + _text_rules(spec.get("portable"), f"{where}: portable")
    fields["values"] = start.values + _value_rules(spec.get("values"), f"{where}: values")
    return replace(start, **fields)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{where}: want a string or a list of strings")


def _path(text: str, where: str) -> paths.Path:
    try:
        return paths.parse(text)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _pattern(text: Any, where: str) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise ValueError(f"{where}: pattern wants a regular expression")
    try:
        return re.compile(text)
    except re.error as e:
        raise ValueError(f"{where}: {text!r} is not a valid regular expression ({e})") from None


def _rules(value: Any, where: str, needed: tuple[str, ...]) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ValueError(f"{where}: want a list of rules")
    for rule in value:
        if not isinstance(rule, Mapping) or any(k not in rule for k in needed):
            raise ValueError(f"{where}: each rule wants {' and '.join(needed)}; got {rule!r}")
    return list(value)


def _text_rules(value: Any, where: str) -> tuple[TextRule, ...]:
    rules = []
    for rule in _rules(value, where, ("at", "pattern")):
        rules.append(TextRule(_path(str(rule["at"]), where), _pattern(rule["pattern"], where),
                              str(rule.get("replace", "<norm>"))))
    return tuple(rules)


def _order_rules(value: Any, where: str) -> tuple[OrderRule, ...]:
    return tuple(OrderRule(_path(str(rule["at"]), where),
                           _pattern(rule["pattern"], where) if "pattern" in rule else None)
                 for rule in _rules(value, where, ("at",)))


def _value_rules(value: Any, where: str) -> tuple[ValueRule, ...]:
    rules = []
    for rule in _rules(value, where, ("at", "pattern", "name")):
        pattern = _pattern(rule["pattern"], where)
        if pattern.groups < 1:
            raise ValueError(f"{where}: {rule['pattern']!r} needs a group around the value")
        rules.append(ValueRule(_path(str(rule["at"]), where), pattern, str(rule["name"])))
    return tuple(rules)
