"""Near misses: the stored request a new one came closest to, what differs (the changed text, not
only its JSON path), and the rule that would have made it a hit. This is how a user finds the next
agent's volatile fields: `near miss: differs from 3c5f… at system[0].text: "…cc_prompt_id=e0c5…"`.

Pure functions over canonical bodies (llm_cache.normalise): the writer process runs them when it
stores a miss, off the request path; `llmcache.explain KEY` runs them on demand.
"""

import difflib
import json
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from llm_cache.closest import MAX_PATHS, differing_paths

CONTEXT = 24  # characters shown around a change
_INDEX = re.compile(r"\[\d+\]")
_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")
_TOKEN = re.compile(r"[A-Za-z0-9_.:+/-]")  # characters a volatile token (an id, a time, a hash) is made of
_SPLIT = re.compile(r"[A-Za-z0-9_.:+/-]+|[^A-Za-z0-9_.:+/-]+")


class Difference(NamedTuple):
    path: str  # messages[1].content[0].text
    stored: str  # the stored request's side, shortened around the change
    new: str  # this request's side


class NearMiss(NamedTuple):
    key: str  # the new entry
    neighbour: str  # the stored entry it came closest to
    differences: list[Difference]  # at most MAX_PATHS
    differing: int  # how many paths differ in all
    profile: str  # the agent profile the new request was keyed with
    user_agent: str

    def describe(self) -> str:
        shown = "; ".join(f"{d.path}: {d.stored} -> {d.new}" for d in self.differences)
        more = self.differing - len(self.differences)
        tail = f" and {more} more" if more > 0 else ""
        return f"near miss: {self.key[:12]} differs from {self.neighbour[:12]} at {shown}{tail}"


def near_miss(key: str, body: Any, candidates: Iterable[tuple[str, Any]], *, profile: str = "",
              user_agent: str = "") -> NearMiss | None:
    """The candidate (key, canonical body) closest to `body` (fewest differing paths), or None."""
    best: tuple[int, str, list[str], Any] | None = None
    for other_key, other in candidates:
        if other_key == key:
            continue
        paths = differing_paths(other, body)
        if paths and (best is None or len(paths) < best[0]):
            best = (len(paths), other_key, paths, other)
    if best is None:
        return None
    count, neighbour, paths, other = best
    differences = [Difference(path, *fragments(value_at(other, path), value_at(body, path))) for path in
                   paths[:MAX_PATHS]]
    return NearMiss(key, neighbour, differences, count, profile, user_agent)


def value_at(document: Any, path: str) -> Any:
    """The value at a JSON path as differing_paths writes them; a missing one is None."""
    if path == "(the whole body)":
        return document
    for part in _PATH_PART.findall(path):
        if part.startswith("["):
            index = int(part[1:-1])
            document = document[index] if isinstance(document, list) and index < len(document) else None
        else:
            document = document.get(part) if isinstance(document, dict) else None
    return document


def fragments(stored: Any, new: Any) -> tuple[str, str]:
    """Each side shortened to the change and some context around it."""
    if not (isinstance(stored, str) and isinstance(new, str)):
        return _short(json.dumps(stored, ensure_ascii=False)), _short(json.dumps(new, ensure_ascii=False))
    start, end_stored, end_new = _changed(stored, new)
    return _around(stored, start, end_stored), _around(new, start, end_new)


def _changed(a: str, b: str) -> tuple[int, int, int]:
    """The changed span: its start, and its end in a and in b (common prefix and suffix removed)."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    tail = 0
    while tail < min(len(a), len(b)) - start and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    return start, len(a) - tail, len(b) - tail


def _around(text: str, start: int, end: int) -> str:
    """The change with CONTEXT characters on each side; a long change is cut after 2 * CONTEXT."""
    left = max(0, start - CONTEXT)
    cut = max(end, start) > start + 2 * CONTEXT
    right = start + 2 * CONTEXT if cut else min(len(text), max(end, start) + CONTEXT)
    return json.dumps(("…" if left else "") + text[left:right] + ("…" if right < len(text) else ""), ensure_ascii=False)


def _short(text: str, limit: int = 2 * CONTEXT + 20) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- the rule that would have made it a hit ----------------------------------------------------------

class Rule(NamedTuple):
    kind: str  # "ignore" (a whole field) or "volatile" (text within a string)
    at: str  # where: the path with every index made [*]
    pattern: str = ""


def rules_for(stored: Any, new: Any, path: str) -> list[Rule]:
    """Rules that make the two values at this path equal: a pattern for each changed token of a
    string (an id, a time, a hash), each named by the text just before it, when such patterns make
    both sides equal; else leaving the field out of the key."""
    at = _INDEX.sub("[*]", path)
    if isinstance(stored, str) and isinstance(new, str):
        patterns = _token_patterns(stored, new)
        if patterns and _normalised(stored, patterns) == _normalised(new, patterns):
            return [Rule("volatile", at, pattern) for pattern in patterns]
    return [Rule("ignore", at)]


def _normalised(text: str, patterns: list[str]) -> str:
    for pattern in patterns:
        text = re.sub(pattern, "<volatile>", text)
    return text


def _token_patterns(a: str, b: str) -> list[str] | None:
    """One pattern per changed token, or None when the change is not a swap of tokens."""
    tokens_a, tokens_b = _SPLIT.findall(a), _SPLIT.findall(b)
    patterns: list[str] = []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, tokens_a, tokens_b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op != "replace" or a2 - a1 != b2 - b1:
            return None
        for i, j in zip(range(a1, a2), range(b1, b2), strict=True):
            if tokens_a[i] == tokens_b[j]:
                continue
            if not (_TOKEN.match(tokens_a[i]) and _TOKEN.match(tokens_b[j])):
                return None  # punctuation or spacing changed: not a volatile token
            left = _name_before(tokens_a, i)
            if left is None:
                return None
            pattern = f"(?<={left}){_character_class(tokens_a[i] + tokens_b[j])}+"
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns or None


def _name_before(tokens: list[str], i: int) -> str | None:
    """What comes just before a token names it (`cc_prompt_id=`, `PGID: `, `"chunk_id":"`): the
    tokens before it back to one with a letter, as the literal of a fixed-width lookbehind."""
    left = ""
    for token in reversed(tokens[max(0, i - 6):i]):
        left = token + left
        if any(c.isalpha() for c in token):
            break
    if not any(c.isalpha() for c in left) or len(left) > 32:
        return None
    return re.escape(left).replace("\\ ", " ")


def _character_class(text: str) -> str:
    if all(c.isdigit() or c == "." for c in text):
        base = "0-9"
    elif all(c in "0123456789abcdef-" for c in text):
        base = "0-9a-f"
    else:
        base = "A-Za-z0-9"
    extra = "".join(sorted({c for c in text if not c.isalnum()} - {"-"}))
    return f"[{base}{re.escape(extra)}{'-' if '-' in text else ''}]"


def suggestion(miss: NearMiss, stored_body: Any, new_body: Any) -> str:
    """The config.yaml text that would have made this near miss a hit."""
    rules = [rule for d in miss.differences
             for rule in rules_for(value_at(stored_body, d.path), value_at(new_body, d.path), d.path)]
    ignore = sorted({r.at for r in rules if r.kind == "ignore"})
    volatile = list(dict.fromkeys((r.at, r.pattern) for r in rules if r.kind == "volatile"))
    name = miss.profile or _profile_name(miss.user_agent)
    lines = ["llm_cache_profiles: |", f"  {name}:"]
    if miss.profile:
        lines.append(f"    extends: {miss.profile}")
    else:
        agent = miss.user_agent.split("/", 1)[0].lower() if miss.user_agent else ""
        lines.append(f'    match: {{user_agent: ["{agent}/*"]}}' if agent else "    match: {}")
    if ignore:
        lines.append("    ignore:")
        lines += [f'      - "{at}"' for at in ignore]
    if volatile:
        lines.append("    volatile:")
        for at, pattern in volatile:
            lines += [f'      - at: "{at}"', f"        pattern: '{pattern}'", '        replace: "<volatile>"']
    return "\n".join(lines) + "\n"


def _profile_name(user_agent: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", user_agent.split("/", 1)[0].lower()).strip("-")
    return name or "my-agent"
