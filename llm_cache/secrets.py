"""Credentials pasted into prompts: an agent that reads a .env file sends its keys to the model.
Such a request is answered but never recorded, so the secret never reaches the cache's database.

Patterns are the providers' own key formats plus generic assignments; each must be specific enough
that ordinary prose ("the secret ingredient", "password reset flow") does not match.
"""

import re
from collections import OrderedDict
from typing import Any

import orjson

# Each pattern is tried only where the anchor regex found where it could start: running every
# pattern over a 20 KB prompt took ~2 ms, one pass of the anchors ~100 us.
_ASSIGNMENT = re.compile(
    # NAME = value, NAME: "value", "name": "value" (inside a JSON string its quotes arrive as \").
    # The value must look like a secret: 8+ characters with a letter and a digit or symbol, not a word.
    rb"(?i)(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|private[_-]?key)"
    rb"[\w-]{0,20}(?:\\?[\"'])?\s*[:=]\s*(?:\\?[\"'])?"
    rb"(?=[^\s\"'\\,;]*[0-9!@#$%^&*_+/~-])(?=[^\s\"'\\,;]*[A-Za-z])[^\s\"'\\,;]{8,}"
)
# (the anchor's first two lowered bytes, kind, pattern)
_PATTERNS: tuple[tuple[bytes, str, re.Pattern[bytes]], ...] = (
    (b"sk", "an Anthropic API key", re.compile(rb"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    (b"sk", "an OpenAI-style API key", re.compile(rb"\bsk-(?:proj-|svcacct-|admin-|or-v1-)?[A-Za-z0-9_-]{20,}")),
    (b"ai", "a Google API key", re.compile(rb"\bAIza[0-9A-Za-z_-]{35}")),
    (b"a", "an AWS access key", re.compile(rb"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b")),
    (b"--", "a private key", re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    (b"g", "a GitHub token", re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})")),
    (b"xo", "a Slack token", re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    (b"be", "a bearer token", re.compile(rb"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{20,}=*")),
    (b"", "a password or secret assignment", _ASSIGNMENT),
)
_ANCHORS = re.compile(  # a plain alternation over a lowered copy: a lookbehind here tripled the cost
    rb"sk-|aiza|akia|asia|abia|acca|gh[pousr]_|github_pat_|xox|bearer|-----begin "
    rb"|passw|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|private[_-]?key"
)


_KEYWORD = re.compile(r"(?i)password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|private[_-]?key")

LONG = 512  # characters: strings this long are scanned alone, and remembered once found clean


class SecretScanner:
    """find_secret over a JSON request body, remembering long strings already found clean.

    Scanning costs ~12 us per KB, and an agent resends its whole conversation (system prompt,
    every earlier turn) on each call: a 20 KB request took ~250 us to scan, on every miss. Each long
    string is scanned once; a repeat costs a hash.
    """

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._clean: OrderedDict[tuple[int, int], None] = OrderedDict()

    def scan(self, raw: bytes) -> str | None:
        """What kind of credential a JSON body carries, or None; raises ValueError for non-JSON."""
        return self.scan_value(orjson.loads(raw))

    def scan_value(self, body: Any) -> str | None:
        """What kind of credential a parsed JSON body carries, or None."""
        short: list[str] = []
        stack: list[Any] = [body]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                for name, item in value.items():
                    if isinstance(item, str) and _KEYWORD.search(name):
                        short.append(f"{name}={item}")  # a JSON "password": "..." is an assignment too
                    short.append(name)
                    stack.append(item)
            elif isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, str):
                if len(value) < LONG:
                    short.append(value)
                elif kind := self._scan_long(value):
                    return kind
        return find_secret("\n".join(short).encode())

    def _scan_long(self, text: str) -> str | None:
        memo_key = (len(text), hash(text))
        if memo_key in self._clean:
            self._clean.move_to_end(memo_key)
            return None
        kind = find_secret(text.encode())
        if kind is None:
            self._clean[memo_key] = None
            if len(self._clean) > self._size:
                self._clean.popitem(last=False)
        return kind


def find_secret(raw: bytes) -> str | None:
    """What kind of credential a text carries, or None."""
    for anchor in _ANCHORS.finditer(raw.lower()):
        at, start = anchor.start(), anchor.group()[:2]
        for prefix, kind, pattern in _PATTERNS:
            if start.startswith(prefix) and pattern.match(raw, at):
                return kind
    return None
